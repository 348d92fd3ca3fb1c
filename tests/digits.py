"""The digits fixture every end-to-end test converts: the ResNet, its data and preprocessing.

``snncc/data`` ships them (the README's first command uses the same files); one place for
their paths and the preprocessing, as keyword arguments (``PRE``) and as CLI flags (``PRE_ARGS``).
"""
import os

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "snncc", "data")
MODEL = os.path.join(DATA, "digits_resnet.onnx")
CALIB = os.path.join(DATA, "digits_calib.npz")
TEST = os.path.join(DATA, "digits_test.npz")
#: pixel values 0..16 scaled to 0..1, then normalised by the training set's mean and std
PRE = dict(input_scale=0.0625, mean=[0.3052], std=[0.376])
PRE_ARGS = ["--input-scale", "0.0625", "--mean", "0.3052", "--std", "0.376"]
