"""Peer (c): SAM CLI's layer downloader, as `sam local` / `sam build` use it.

    <sam venv>/bin/python sam_layer_downloader.py LAYER_CACHE STAGE_DIR LAYER_VERSION_ARN...

``samcli.local.layers.layer_downloader.LayerDownloader.download_all`` fetches each layer
(GetLayerVersion, requests, SAM's own unzip) into its own folder of LAYER_CACHE, skipping
layers already cached there.  SAM never merges layers on disk: the Dockerfile it generates
(``samcli.local.docker.lambda_image.LambdaImage._generate_dockerfile``) ADDs the first
layer to /opt and overlays the others with ``cp -rf /tmp/layerN/. /opt/``.  This script
does that overlay on disk with the same commands, into STAGE_DIR/opt, so that the result
is comparable to a stage.
"""

import os
import subprocess
import sys

import boto3
from samcli.lib.providers.provider import LayerVersion
from samcli.local.layers.layer_downloader import LayerDownloader


def main() -> None:
    cache, stage, arns = sys.argv[1], sys.argv[2], sys.argv[3:]
    region = arns[0].split(":")[3]
    client = boto3.client("lambda", region_name=region)
    layers = [LayerVersion(arn, None) for arn in arns]
    downloader = LayerDownloader(cache, os.getcwd(), stacks=[], lambda_client=client)
    downloaded = downloader.download_all(layers)
    opt = os.path.join(stage, "opt")
    os.makedirs(stage, exist_ok=True)
    for index, layer in enumerate(downloaded):
        if index == 0:
            # ADD layer1 /opt: a copy that keeps modes and symlinks.
            subprocess.run(["cp", "-a", layer.codeuri + "/.", opt + "/"], check=True) if os.path.isdir(opt) \
                else subprocess.run(["cp", "-a", layer.codeuri, opt], check=True)
        else:
            # ADD layerN /tmp/layerN; RUN cp -rf /tmp/layerN/. /opt/
            subprocess.run(["cp", "-rf", layer.codeuri + "/.", opt + "/"], check=True)


if __name__ == "__main__":
    main()
