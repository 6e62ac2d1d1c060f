#!/bin/sh
# Written by extpack render. Outside Lambda (no AWS_LAMBDA_RUNTIME_API), run the handler
# under the Runtime Interface Emulator so the image can be invoked locally.
# Lambda's managed runtimes start the handler through AWS_LAMBDA_EXEC_WRAPPER when it is
# set; this image's base does not, so this script does (extpack render --wrapper).
if [ -n "${AWS_LAMBDA_EXEC_WRAPPER}" ]; then
  set -- "${AWS_LAMBDA_EXEC_WRAPPER}" "$@"
fi
if [ -z "${AWS_LAMBDA_RUNTIME_API}" ]; then
  for rie in /usr/bin/aws-lambda-rie /usr/local/bin/aws-lambda-rie; do
    if [ -x "$rie" ]; then exec "$rie" "$@"; fi
  done
fi
exec "$@"
