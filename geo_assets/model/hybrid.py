"""The deeper hybrid head (seed 004, Okkerman 2024): image and semantic embeddings side by
side into a classifier with three hidden layers.

    [caption CLS | image CLS] -> Linear(in,1024) -> Linear(1024,512) -> Linear(512,256) -> softmax over cells

Trained as the thesis did: cross entropy only, SGD with mini-batches of 128, the
learning rate lowered on a validation plateau; the prediction is the arg-max cell's
centre (the thesis scored class centroids), so there is no regression head and no
haversine term. The network is `GeolocatorMLP` with `offset=False` (the same three
hidden widths and activations), so saving, calibration, the out-of-distribution score
and evaluation are shared with the other models. What the thesis does not fix is
this project's choice: classes are the cells holding training rows, and inputs are
standardised (the frozen encoders' blocks differ in scale, which plain SGD suffers
from more than Adam). The thesis's inverse-frequency class weights are left out.
"""

from __future__ import annotations

HIDDEN = (1024, 512, 256)

# TrainConfig fields the family fixes (they win over the run config's lr and batch size).
TRAIN_SETTINGS = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 128,
                  "haversine_weight": 0.0, "offset": False}
