"""An independent client of the Thanos Rules, Targets, Metadata and Exemplars gRPC APIs: grpcio with raw bytes
(no generated code), requests encoded by hand and every answer decoded against a schema written from Thanos'
wire facts. An unknown field number or a wrong wire type is an error.

usage: thanos_wire.py ADDR EXEMPLAR_QUERY START_MS END_MS  ->  prints one JSON summary line
"""
import json
import sys

import grpc

VARINT, I64, LEN, I32 = 0, 1, 2, 5
STR = (LEN, None)

LABEL = {1: STR, 2: STR}
LABELSET = {1: (LEN, LABEL)}
TS = {1: (VARINT, None), 2: (VARINT, None)}
RECORDING = {1: STR, 2: STR, 3: (LEN, LABELSET), 4: STR, 5: STR, 6: (I64, None), 7: (LEN, TS)}
INSTANCE = {1: (LEN, LABELSET), 2: (LEN, LABELSET), 3: (VARINT, None), 4: (LEN, TS), 5: STR, 6: (VARINT, None)}
ALERT = {1: (VARINT, None), 2: STR, 3: STR, 4: (I64, None), 5: (LEN, LABELSET), 6: (LEN, LABELSET),
         7: (LEN, INSTANCE), 8: STR, 9: STR, 10: (I64, None), 11: (LEN, TS), 12: (I64, None)}
RULE = {1: (LEN, RECORDING), 2: (LEN, ALERT)}
GROUP = {1: STR, 2: STR, 3: (LEN, RULE), 4: (I64, None), 5: (I64, None), 6: (LEN, TS), 8: (VARINT, None),
         9: (VARINT, None)}
RULES_RESPONSE = {1: (LEN, GROUP), 2: STR}
ACTIVE = {1: (LEN, LABELSET), 2: (LEN, LABELSET), 3: STR, 4: STR, 5: STR, 6: STR, 7: (LEN, TS),
          8: (I64, None), 9: (VARINT, None)}
DROPPED = {1: (LEN, LABELSET)}
TARGETS_RESPONSE = {1: (LEN, {1: (LEN, ACTIVE), 2: (LEN, DROPPED)}), 2: STR}
META = {1: STR, 2: STR, 3: STR}
METADATA_RESPONSE = {1: (LEN, {1: (LEN, {1: STR, 2: (LEN, {2: (LEN, META)})})}), 2: STR}
EXEMPLAR = {1: (LEN, LABELSET), 2: (I64, None), 3: (VARINT, None)}
EXEMPLARS_RESPONSE = {1: (LEN, {1: (LEN, LABELSET), 2: (LEN, EXEMPLAR)}), 2: STR}


def varint(buf, i):
    shift = value = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i
        if shift > 63:
            raise ValueError("varint too long")


def decode(buf, schema, path):
    """Decodes `buf` as a message of `schema` into {field: [values]}; strings as str, messages as dicts."""
    out = {}
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        field, wt = key >> 3, key & 7
        if field not in schema:
            raise ValueError(f"{path}: unknown field {field} (wire type {wt})")
        want, sub = schema[field]
        if wt != want:
            raise ValueError(f"{path}.{field}: wire type {wt}, want {want}")
        if wt == VARINT:
            v, i = varint(buf, i)
        elif wt == I64:
            v, i = buf[i:i + 8], i + 8
        elif wt == I32:
            v, i = buf[i:i + 4], i + 4
        else:
            n, i = varint(buf, i)
            raw, i = buf[i:i + n], i + n
            if len(raw) != n:
                raise ValueError(f"{path}.{field}: truncated")
            v = decode(raw, sub, f"{path}.{field}") if sub is not None else raw.decode("utf-8")
        out.setdefault(field, []).append(v)
    return out


def enc_varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def labels(ls):
    return {l[1][0]: l.get(2, [""])[0] for l in ls.get(1, [])}


def main():
    addr, query, start, end = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    ch = grpc.insecure_channel(addr)
    call = lambda m, req: list(ch.unary_stream(m)(req, timeout=30))
    summary = {}

    frames = [decode(f, RULES_RESPONSE, "RulesResponse") for f in call("/thanos.Rules/Rules", b"")]
    groups = [f[1][0] for f in frames if 1 in f]
    rules = []
    for g in groups:
        for r in g.get(3, []):
            if 2 in r:
                a = r[2][0]
                rules.append({"kind": "alert", "name": a[2][0], "labels": labels(a.get(5, [{}])[0]),
                              "alerts": len(a.get(7, []))})
            else:
                rr = r[1][0]
                rules.append({"kind": "record", "name": rr[1][0], "labels": labels(rr.get(3, [{}])[0])})
    summary["rules"] = {"groups": [g[1][0] for g in groups], "rules": rules}

    frames = [decode(f, TARGETS_RESPONSE, "TargetsResponse") for f in call("/thanos.Targets/Targets", b"")]
    active = [a for f in frames if 1 in f for a in f[1][0].get(1, [])]
    summary["targets"] = [{"labels": labels(a[2][0]), "health": a.get(9, [0])[0]} for a in active]

    frames = [decode(f, METADATA_RESPONSE, "MetricMetadataResponse")
              for f in call("/thanos.Metadata/MetricMetadata", b"")]
    meta = {}
    for f in frames:
        for m in f.get(1, []):
            for entry in m.get(1, []):
                meta[entry[1][0]] = [x.get(1, [""])[0] for x in entry[2][0].get(2, [])]
    summary["metadata"] = meta

    q = query.encode()
    req = b"\x0a" + enc_varint(len(q)) + q + b"\x10" + enc_varint(start) + b"\x18" + enc_varint(end)
    frames = [decode(f, EXEMPLARS_RESPONSE, "ExemplarsResponse") for f in call("/thanos.Exemplars/Exemplars", req)]
    summary["exemplars"] = [{"series": labels(d[1][0]), "count": len(d.get(2, []))}
                            for f in frames for d in f.get(1, [])]
    print(json.dumps(summary))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the Rust test prints this
        print(f"ERROR {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(2)
