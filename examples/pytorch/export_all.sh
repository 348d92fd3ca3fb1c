#!/usr/bin/env bash
# Export the three shared CIFAR-10 ResNets to out/resnet{20,32,56}.onnx (legacy exporter,
# BatchNorm kept) and print each ANN accuracy on the full 10000-image JPEG test split.
#
#   examples/pytorch/export_all.sh                 # from anywhere; writes <repo>/out/
#   examples/pytorch/export_all.sh --dynamo        # also out/resnetD_dynamo.onnx (+ .onnx.data)
#
# Shared directory: $SNNCC_SHARED, else ../shared relative to the repository root.
# Extra arguments after the optional --dynamo are passed to export_cifar_resnet.py
# (e.g. --n 1000 for a quicker, 1000-image accuracy).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dynamo=0
if [[ "${1:-}" == "--dynamo" ]]; then dynamo=1; shift; fi
mkdir -p "$repo/out"
for depth in 20 32 56; do
    echo "== ResNet-$depth (legacy exporter) -> out/resnet$depth.onnx"
    python3 "$here/export_cifar_resnet.py" --depth "$depth" --out "$repo/out/resnet$depth.onnx" --n 0 "$@" \
        2> >(grep -v -e "Warning" -e "_C._jit_pass" >&2)
    if [[ $dynamo == 1 ]]; then
        echo "== ResNet-$depth (dynamo exporter) -> out/resnet${depth}_dynamo.onnx"
        python3 "$here/export_cifar_resnet.py" --depth "$depth" --out "$repo/out/resnet${depth}_dynamo.onnx" \
            --dynamo --n 0 "$@" 2> >(grep -v -e "torchvision is not installed" -e "Warning" -e "return cls.__new__" >&2)
    fi
done
