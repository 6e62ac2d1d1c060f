#!/bin/sh
# Written by extpack render --rie. Outside Lambda (no AWS_LAMBDA_RUNTIME_API), run the
# handler under the Runtime Interface Emulator so the image can be invoked locally.
if [ -z "${AWS_LAMBDA_RUNTIME_API}" ]; then
  exec /usr/bin/aws-lambda-rie "$@"
fi
exec "$@"
