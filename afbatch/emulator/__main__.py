"""``python -m afbatch.emulator [--host H] [--port P] [--with-s3]``"""

import argparse
import sys

from afbatch.errors import AfbatchError

from . import serve

parser = argparse.ArgumentParser(prog="python -m afbatch.emulator", description=serve.__doc__)
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=8787)
parser.add_argument("--with-s3", action="store_true", help="also start a moto S3 server")
args = parser.parse_args()
try:
    serve(args.host, args.port, args.with_s3)
except AfbatchError as e:  # a taken port, no moto: one line, as `afbatch emulate` says it
    print(f"error: {e}", file=sys.stderr)
    sys.exit(e.exit_code)
