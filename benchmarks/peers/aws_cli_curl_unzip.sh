#!/bin/sh
# Peer (a): the recipe from extpack's DESIGN.md, as people script it today.
#   usage: aws_cli_curl_unzip.sh STAGE_DIR TMP_DIR LAYER_VERSION_ARN...
# Per layer, in order: ask the Lambda API for the presigned URL with the aws CLI, download
# it with curl, unzip it over STAGE_DIR/opt (-o: later layers overwrite, as Lambda does).
# The endpoint comes from AWS_ENDPOINT_URL_LAMBDA (the benchmark's loopback server).
set -eu
stage=$1
tmp=$2
shift 2
mkdir -p "$stage/opt" "$tmp"
i=0
for arn in "$@"; do
    i=$((i + 1))
    region=$(echo "$arn" | cut -d: -f4)
    url=$(aws lambda get-layer-version-by-arn --arn "$arn" --query Content.Location --output text \
        --region "$region" --endpoint-url "$AWS_ENDPOINT_URL_LAMBDA")
    curl -sS -f -o "$tmp/layer-$i.zip" "$url"
    unzip -q -o "$tmp/layer-$i.zip" -d "$stage/opt"
done
rm -rf "$tmp"
