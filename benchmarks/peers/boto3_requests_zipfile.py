"""Peer (b): what people write by hand in Python — boto3 + requests + zipfile.extractall.

    python boto3_requests_zipfile.py STAGE_DIR LAYER_VERSION_ARN...

Per layer, in order: GetLayerVersionByArn (the region is the ARN's), stream the zip to a
temp file with requests, ``zipfile.ZipFile(...).extractall(STAGE_DIR/opt)``.  This is the
common hand-written version; it is what loses executable bits and turns symlinks into
regular files, because ``extractall`` ignores the Unix mode in ``external_attr``.
"""

import os
import shutil
import sys
import tempfile
import zipfile

import boto3
import requests


def main() -> None:
    stage, arns = sys.argv[1], sys.argv[2:]
    opt = os.path.join(stage, "opt")
    os.makedirs(opt, exist_ok=True)
    clients = {}
    with requests.Session() as http, tempfile.TemporaryDirectory(dir=stage) as tmp:
        for i, arn in enumerate(arns):
            region = arn.split(":")[3]
            if region not in clients:
                clients[region] = boto3.client("lambda", region_name=region)
            layer = clients[region].get_layer_version_by_arn(Arn=arn)
            path = os.path.join(tmp, f"layer-{i}.zip")
            with http.get(layer["Content"]["Location"], stream=True, timeout=60) as response:
                response.raise_for_status()
                with open(path, "wb") as out:
                    shutil.copyfileobj(response.raw, out, 1 << 20)
            with zipfile.ZipFile(path) as archive:
                archive.extractall(opt)
            os.unlink(path)


if __name__ == "__main__":
    main()
