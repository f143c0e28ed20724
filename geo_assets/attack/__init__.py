"""Model-free adversaries: how much location an image's text gives away without any learning."""
