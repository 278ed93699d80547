"""Azure Blob helper for the sluice-e2e tests: container operations against a local Azurite, with Microsoft's SDK
(azure-storage-blob), independent of Sluice's object storage client.

usage: az_helper.py CONNECTION_STRING mkcontainer CONTAINER
       az_helper.py CONNECTION_STRING put-dir CONTAINER LOCAL_DIR KEY_PREFIX   # meta.json files uploaded last
       az_helper.py CONNECTION_STRING ls CONTAINER
"""

import os
import sys

from azure.storage.blob import BlobServiceClient


def join_key(prefix, rel):
    prefix = prefix.strip("/")
    return f"{prefix}/{rel}" if prefix else rel


def main():
    conn, cmd, container = sys.argv[1], sys.argv[2], sys.argv[3]
    svc = BlobServiceClient.from_connection_string(conn)
    if cmd == "mkcontainer":
        svc.create_container(container)
    elif cmd == "put-dir":
        local, prefix = sys.argv[4], sys.argv[5]
        files = []
        for root, _dirs, names in os.walk(local):
            for name in names:
                path = os.path.join(root, name)
                rel = os.path.relpath(path, local).replace(os.sep, "/")
                files.append((rel, path))
        # Upload order of Thanos: chunks, index, meta.json last.
        files.sort(key=lambda f: (f[0].endswith("meta.json"), f[0]))
        c = svc.get_container_client(container)
        for rel, path in files:
            with open(path, "rb") as f:
                c.upload_blob(join_key(prefix, rel), f, overwrite=True)
    elif cmd == "ls":
        for b in svc.get_container_client(container).list_blobs():
            print(b.name)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
