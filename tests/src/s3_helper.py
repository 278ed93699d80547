"""S3 helper for the sluice-e2e tests: bucket operations against a local moto server, with boto3.

usage: s3_helper.py ENDPOINT_URL mkbucket BUCKET
       s3_helper.py ENDPOINT_URL put-dir BUCKET LOCAL_DIR KEY_PREFIX   # meta.json files uploaded last
       s3_helper.py ENDPOINT_URL put BUCKET KEY LOCAL_FILE
       s3_helper.py ENDPOINT_URL rm-prefix BUCKET KEY_PREFIX           # meta.json objects deleted first
       s3_helper.py ENDPOINT_URL ls BUCKET
"""

import os
import sys

import boto3
from botocore.config import Config


def client(endpoint):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
    )


def join_key(prefix, rel):
    prefix = prefix.strip("/")
    return f"{prefix}/{rel}" if prefix else rel


def put_dir(s3, bucket, local, prefix):
    files = []
    for root, _dirs, names in os.walk(local):
        for name in names:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, local).replace(os.sep, "/")
            files.append((rel, path))
    # Upload order of Thanos: chunks, index, meta.json last.
    files.sort(key=lambda f: (f[0].endswith("meta.json"), f[0]))
    for rel, path in files:
        s3.upload_file(path, bucket, join_key(prefix, rel))


def list_keys(s3, bucket, prefix=""):
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return keys


def rm_prefix(s3, bucket, prefix):
    keys = list_keys(s3, bucket, prefix.strip("/") + "/")
    keys.sort(key=lambda k: (not k.endswith("meta.json"), k))
    for k in keys:
        s3.delete_object(Bucket=bucket, Key=k)


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    s3 = client(argv[1])
    cmd, args = argv[2], argv[3:]
    if cmd == "mkbucket":
        s3.create_bucket(Bucket=args[0])
    elif cmd == "put-dir":
        put_dir(s3, args[0], args[1], args[2])
    elif cmd == "put":
        s3.upload_file(args[2], args[0], args[1])
    elif cmd == "rm-prefix":
        rm_prefix(s3, args[0], args[1])
    elif cmd == "ls":
        for k in list_keys(s3, args[0]):
            print(k)
    else:
        print(f"unknown command {cmd!r}\n{__doc__}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
