#!/usr/bin/env python3
"""Offline validation of everything under deploy/, run by tests/tests/deploy.rs and usable by hand after an edit:

    python3 deploy/validate.py [--only SECTION[,SECTION]] [--report FILE] [DEPLOY_DIR]

Sections: kubernetes, multicluster, helm, docker, config. Needs the packages of tests/requirements.txt
(kubernetes-validate, jsonschema, PyYAML, helm-python-sdk); nothing here touches the network or a cluster.

What is checked:
- every YAML document of kubernetes/ and multicluster/ parses; Kubernetes kinds validate against the OpenAPI schemas
  that kubernetes-validate bundles, strictly (unknown fields are errors), for the oldest and newest supported
  Kubernetes; cert-manager kinds (not in those schemas) against structural JSON schemas written here; Kustomizations
  list exactly the files beside them;
- across the documents of one directory: selectors match pod labels, named ports exist, every mounted ConfigMap or
  Secret exists (or is made by a cert-manager Certificate) and holds the keys the flags name, every file a `sluice`
  flag or config names lies on a mount, writable paths are on writable volumes, probes hit /-/healthy and /-/ready,
  the security context is non-root, read-only, without capabilities, Ingresses for gRPC verify client certificates;
- a `sluice sidecar` and the Prometheus in its pod: the same TSDB volume (--tsdb.path), Prometheus reads the file
  the reloader renders, equal min/max block durations (no local compaction), --web.enable-lifecycle for reloads,
  --prometheus.url reaches the pod's Prometheus, the config template's $(VARS) are in the sidecar's env, external
  labels differ per replica, rule_files and rule dirs are mounted, and queriers that discover the sidecars remove
  their per-pod labels (--query.replica-label);
- the Helm chart: values.schema.json is a valid draft-07 schema, values.yaml and ci/*.yaml validate against it, the
  chart lints and renders (Helm's Go SDK through helm-python-sdk) with each values file, and the rendered documents
  pass the Kubernetes checks above; every template renders in at least one values file;
- docker/: the Dockerfile's instructions, stages and final user; compose.yaml's services, dependencies, volumes,
  published ports; shell scripts parse (sh -n);
- Sluice configs (deploy/config, docker/config and the ones embedded in manifests and the rendered chart) are
  collected into the report for Sluice's own loaders (the Rust test runs them); web-config files, which no Sluice
  loader reads yet, are checked here against Prometheus' web-config keys.

Exit status: 0 all good, 1 problems (each printed), 2 a dependency is missing.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

try:
    import jsonschema
    import kubernetes_validate.utils as kv
    import yaml
except ImportError as e:  # pragma: no cover - the message is the point
    print(f"validate.py: missing Python package ({e}); install with `pip install -r tests/requirements.txt`",
          file=sys.stderr)
    sys.exit(2)

SECTIONS = ("kubernetes", "multicluster", "helm", "docker", "config")
# Oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest kubernetes-validate knows.
KUBE_VERSIONS = ("1.27.0", kv.latest_version())
SLUICE_IMAGE = re.compile(r"(^|/)sluice(:|@|$)")
SLUICE_SUBCOMMANDS = {"store", "query", "up", "plugin", "sidecar", "compact"}
# Flags whose value is a file the process reads, and the kind of Sluice config it is (None: not a config).
FILE_FLAGS = {
    "--objstore.config-file": "objstore",
    "--policies.config-file": "policies",
    "--endpoint.sd-config-file": "sd-config",
    "--http.config": "web-config",
    "--policies.admin-token-file": None,
    "--grpc-server-tls-cert": None,
    "--grpc-server-tls-key": None,
    "--grpc-server-tls-client-ca": None,
    "--grpc-client-tls-cert": None,
    "--grpc-client-tls-key": None,
    "--grpc-client-tls-ca": None,
    "--reloader.config-file": None,
    "--prometheus.http-client-file": None,
}
# Flags whose value is a directory (or file) the process writes.
WRITE_FLAGS = ("--data-dir", "--policies.cache-dir", "--tsdb.path", "--reloader.config-envsubst-file")
# Flags whose value is a directory the process reads.
READ_DIR_FLAGS = ("--reloader.rule-dir",)
# File names of Sluice configs, to pick the loader.
CONFIG_NAME = [
    (re.compile(r"^objstore.*\.ya?ml$"), "objstore"),
    (re.compile(r"^policies.*\.ya?ml$"), "policies"),
    (re.compile(r"^endpoints.*\.ya?ml$"), "sd-config"),
    (re.compile(r"^web-config.*\.ya?ml$"), "web-config"),
]
# Secrets the cert-manager Certificate of that name writes.
CERT_MANAGER_KEYS = {"tls.crt", "tls.key", "ca.crt"}
TLS_SECRET_KEYS = {"tls.crt", "tls.key"}


class Report:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.checked: list[str] = []
        self.not_validated: list[str] = []
        self.sluice_configs: list[dict] = []
        self.commands: list[dict] = []
        self.compose_cert_files: list[str] = []

    def problem(self, where: str, msg: str) -> None:
        self.problems.append(f"{where}: {msg}")

    def config(self, origin: str, kind: str, text: str) -> None:
        """A Sluice config for the loaders; the same text found in several places is loaded once."""
        for c in self.sluice_configs:
            if c["kind"] == kind and c["text"] == text:
                if origin not in c["origins"]:
                    c["origins"].append(origin)
                return
        self.sluice_configs.append({"origin": origin, "origins": [origin], "kind": kind, "text": text})

    def to_json(self) -> dict:
        return {
            "problems": self.problems,
            "checked": self.checked,
            "not_validated": self.not_validated,
            "sluice_configs": self.sluice_configs,
            "commands": self.commands,
            "compose_cert_files": sorted(set(self.compose_cert_files)),
        }


# ---------------------------------------------------------------------------------------------------------------
# cert-manager: its CRDs are not in kubernetes-validate's schemas. These structural schemas cover the fields of
# cert-manager.io/v1 Issuer and Certificate (https://cert-manager.io/docs/reference/api-docs/) that deploy/ uses, and
# reject unknown ones.

_META = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}
_DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"}
_ISSUER_SPEC = {
    "type": "object",
    "minProperties": 1,
    "maxProperties": 1,
    "properties": {
        "selfSigned": {
            "type": "object",
            "properties": {"crlDistributionPoints": {"type": "array", "items": {"type": "string"}}},
            "additionalProperties": False,
        },
        "ca": {
            "type": "object",
            "required": ["secretName"],
            "properties": {
                "secretName": {"type": "string", "minLength": 1},
                "crlDistributionPoints": {"type": "array", "items": {"type": "string"}},
                "ocspServers": {"type": "array", "items": {"type": "string"}},
                "issuingCertificateURLs": {"type": "array", "items": {"type": "string"}},
            },
            "additionalProperties": False,
        },
        "acme": {"type": "object"},
        "vault": {"type": "object"},
        "venafi": {"type": "object"},
    },
    "additionalProperties": False,
}
_USAGES = [
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement", "data encipherment",
    "cert sign", "crl sign", "encipher only", "decipher only", "any", "server auth", "client auth", "code signing",
    "email protection", "s/mime", "ipsec end system", "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
    "microsoft sgc", "netscape sgc",
]
_CERT_SPEC = {
    "type": "object",
    "required": ["secretName", "issuerRef"],
    "anyOf": [{"required": ["commonName"]}, {"required": ["dnsNames"]}, {"required": ["uris"]},
              {"required": ["ipAddresses"]}, {"required": ["emailAddresses"]}],
    "properties": {
        "secretName": {"type": "string", "minLength": 1},
        "commonName": {"type": "string", "maxLength": 64},
        "dnsNames": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "uris": {"type": "array", "items": {"type": "string", "pattern": r"^[a-z][a-z0-9+.-]*:"}},
        "ipAddresses": {"type": "array", "items": {"type": "string"}},
        "emailAddresses": {"type": "array", "items": {"type": "string"}},
        "isCA": {"type": "boolean"},
        "duration": _DURATION,
        "renewBefore": _DURATION,
        "usages": {"type": "array", "items": {"enum": _USAGES}},
        "subject": {"type": "object"},
        "secretTemplate": {"type": "object"},
        "revisionHistoryLimit": {"type": "integer"},
        "privateKey": {
            "type": "object",
            "properties": {
                "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                "encoding": {"enum": ["PKCS1", "PKCS8"]},
                "size": {"type": "integer"},
                "rotationPolicy": {"enum": ["Never", "Always"]},
            },
            "additionalProperties": False,
        },
        "issuerRef": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "kind": {"type": "string"},
                "group": {"type": "string"},
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}


def _cm_schema(kind: str, spec: dict) -> dict:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "cert-manager.io/v1"},
            "kind": {"const": kind},
            "metadata": _META,
            "spec": spec,
        },
        "additionalProperties": False,
    }


CERT_MANAGER_SCHEMAS = {
    "Issuer": _cm_schema("Issuer", _ISSUER_SPEC),
    "ClusterIssuer": _cm_schema("ClusterIssuer", _ISSUER_SPEC),
    "Certificate": _cm_schema("Certificate", _CERT_SPEC),
}

# Kustomize's Kustomization is no API object either: the fields deploy/ uses.
KUSTOMIZATION_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "resources"],
    "properties": {
        "apiVersion": {"const": "kustomize.config.k8s.io/v1beta1"},
        "kind": {"const": "Kustomization"},
        "namespace": {"type": "string"},
        "resources": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "labels": {"type": "array", "items": {
            "type": "object",
            "required": ["pairs"],
            "properties": {
                "pairs": {"type": "object", "additionalProperties": {"type": "string"}},
                "includeSelectors": {"type": "boolean"},
                "includeTemplates": {"type": "boolean"},
            },
            "additionalProperties": False,
        }},
        "images": {"type": "array", "items": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "newName": {"type": "string"}, "newTag": {"type": "string"},
                           "digest": {"type": "string"}},
            "additionalProperties": False,
        }},
    },
    "additionalProperties": False,
}

# Prometheus' web-config (exporter-toolkit) format, for --http.config: no Sluice loader reads it yet.
WEB_CONFIG_SCHEMA = {
    "type": "object",
    "properties": {
        "tls_server_config": {
            "type": "object",
            "properties": {
                "cert_file": {"type": "string"}, "key_file": {"type": "string"},
                "cert": {"type": "string"}, "key": {"type": "string"},
                "client_ca_file": {"type": "string"}, "client_ca": {"type": "string"},
                "client_auth_type": {"enum": ["NoClientCert", "RequestClientCert", "RequireAnyClientCert",
                                              "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"]},
                "client_allowed_sans": {"type": "array", "items": {"type": "string"}},
                "min_version": {"enum": ["TLS10", "TLS11", "TLS12", "TLS13"]},
                "max_version": {"enum": ["TLS10", "TLS11", "TLS12", "TLS13"]},
                "cipher_suites": {"type": "array", "items": {"type": "string"}},
                "curve_preferences": {"type": "array", "items": {"type": "string"}},
                "prefer_server_cipher_suites": {"type": "boolean"},
            },
            "additionalProperties": False,
            "dependentRequired": {"cert_file": ["key_file"], "key_file": ["cert_file"]},
        },
        "http_server_config": {
            "type": "object",
            "properties": {"http2": {"type": "boolean"}, "headers": {"type": "object"}},
            "additionalProperties": False,
        },
        "basic_auth_users": {
            "type": "object",
            "additionalProperties": {"type": "string", "pattern": r"^\$2[aby]?\$[0-9]{2}\$[./A-Za-z0-9]{53}$"},
        },
    },
    "additionalProperties": False,
}


def schema_errors(schema: dict, doc, validator=jsonschema.Draft202012Validator) -> list[str]:
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
            for e in sorted(validator(schema).iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))]


# ---------------------------------------------------------------------------------------------------------------
# Kubernetes documents


def load_yaml_docs(path: Path, rep: Report, rel: str) -> list[tuple[str, dict]]:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        rep.problem(rel, f"YAML does not parse: {e}")
        return []
    out = []
    for i, d in enumerate(docs):
        origin = f"{rel}#{i}"
        if not isinstance(d, dict):
            rep.problem(origin, "a document is not a mapping")
            continue
        out.append((origin, d))
    return out


def describe(doc: dict) -> str:
    return f"{doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"


def validate_object(origin: str, doc: dict, rep: Report) -> None:
    """One document against its schema."""
    for key in ("apiVersion", "kind") if doc.get("kind") == "Kustomization" else ("apiVersion", "kind", "metadata"):
        if key not in doc:
            rep.problem(origin, f"missing {key}")
            return
    what = f"{origin} {describe(doc)}"
    api, kind = str(doc["apiVersion"]), str(doc["kind"])
    if api.startswith("cert-manager.io/"):
        schema = CERT_MANAGER_SCHEMAS.get(kind)
        if schema is None or api != "cert-manager.io/v1":
            rep.problem(what, f"no structural schema for {api} {kind}")
            return
        for err in schema_errors(schema, doc):
            rep.problem(what, f"cert-manager structural schema: {err}")
        return
    if kind == "Kustomization":
        for err in schema_errors(KUSTOMIZATION_SCHEMA, doc):
            rep.problem(what, f"kustomization: {err}")
        return
    for version in KUBE_VERSIONS:
        try:
            kv.validate(doc, version, strict=True)
        except kv.SchemaNotFoundError:
            rep.problem(what, f"no Kubernetes {version} schema for {api} {kind}")
        except kv.ValidationError as e:
            err = e.caused_by if hasattr(e, "caused_by") else e
            path = "/".join(str(p) for p in getattr(err, "absolute_path", []) or getattr(err, "path", []))
            rep.problem(what, f"Kubernetes {version} schema: {path or '(root)'}: {getattr(err, 'message', err)}")
            return


def podspec_of(doc: dict) -> dict | None:
    if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return ((doc.get("spec") or {}).get("template") or {}).get("spec")
    if doc.get("kind") == "Pod":
        return doc.get("spec")
    return None


def template_labels(doc: dict) -> dict:
    if doc.get("kind") == "Pod":
        return (doc.get("metadata") or {}).get("labels") or {}
    return (((doc.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


class Objects:
    """The documents of one directory (or one rendering), indexed for cross-references."""

    def __init__(self, docs: list[tuple[str, dict]], external: set[str]):
        self.docs = docs
        self.external = external
        self.configmaps: dict[str, dict] = {}
        self.secrets: dict[str, dict] = {}
        self.secret_keys: dict[str, set] = {}
        self.services: dict[str, dict] = {}
        self.workloads: list[tuple[str, dict]] = []
        # Headless Service of a sidecar StatefulSet -> the external labels that differ per pod (replica labels).
        self.sidecar_replica_labels: dict[str, set[str]] = {}
        for origin, d in docs:
            kind, name = d.get("kind"), (d.get("metadata") or {}).get("name")
            if kind == "ConfigMap":
                self.configmaps[name] = {**(d.get("data") or {}), **(d.get("binaryData") or {})}
            elif kind == "Secret":
                data = {**(d.get("data") or {}), **(d.get("stringData") or {})}
                self.secrets[name] = data
                self.secret_keys[name] = set(data)
            elif kind == "Certificate":
                secret = (d.get("spec") or {}).get("secretName")
                if secret:
                    self.secret_keys.setdefault(secret, set()).update(CERT_MANAGER_KEYS)
            elif kind == "Service":
                self.services[name] = d
            if podspec_of(d) is not None:
                self.workloads.append((origin, d))

    def source_keys(self, vol: dict) -> tuple[str, str, set | None] | None:
        """(kind, name, keys) of a configMap/secret volume; keys None when the object is external."""
        if "configMap" in vol:
            name = vol["configMap"].get("name")
            if name in self.configmaps:
                return "ConfigMap", name, set(self.configmaps[name])
            return "ConfigMap", name, None
        if "secret" in vol:
            name = vol["secret"].get("secretName")
            if name in self.secret_keys:
                return "Secret", name, set(self.secret_keys[name])
            return "Secret", name, None
        return None

    def content(self, kind: str, name: str, key: str) -> str | None:
        if kind == "ConfigMap":
            v = self.configmaps.get(name, {}).get(key)
        else:
            v = self.secrets.get(name, {}).get(key)
        return v if isinstance(v, str) else None


def resolve_path(path: str, container: dict, volumes: dict, claims: set, objs: Objects):
    """The mount that holds `path`: (mount, volume or None, key within the volume or '')."""
    best = None
    for m in container.get("volumeMounts") or []:
        mp = m.get("mountPath", "").rstrip("/")
        if path == mp or path.startswith(mp + "/"):
            if best is None or len(mp) > len(best.get("mountPath", "").rstrip("/")):
                best = m
    if best is None:
        return None
    rest = path[len(best.get("mountPath", "").rstrip("/")):].lstrip("/")
    if best.get("subPath"):
        rest = best["subPath"] + ("/" + rest if rest else "")
    return best, volumes.get(best.get("name")), rest


def check_workloads(where: str, objs: Objects, rep: Report) -> None:
    for origin, d in objs.workloads:
        what = f"{origin} {describe(d)}"
        spec = d.get("spec") or {}
        pod = podspec_of(d) or {}
        labels = template_labels(d)
        sel = (spec.get("selector") or {}).get("matchLabels") or {}
        if d.get("kind") != "Pod" and not selects(sel, labels):
            rep.problem(what, f"selector {sel} does not match the pod template labels {labels}")
        psc = pod.get("securityContext") or {}
        if pod.get("automountServiceAccountToken") is not False:
            rep.problem(what, "automountServiceAccountToken must be false (Sluice uses no Kubernetes API)")
        volumes = {v.get("name"): v for v in pod.get("volumes") or []}
        claims = {((c.get("metadata") or {}).get("name")) for c in spec.get("volumeClaimTemplates") or []}
        for name, vol in volumes.items():
            src = objs.source_keys(vol)
            if src and src[2] is None and src[1] not in objs.external:
                rep.problem(what, f"volume {name}: {src[0]} {src[1]} is not defined here")
            if src and src[2] is not None:
                items = (vol.get("configMap") or vol.get("secret") or {}).get("items") or []
                for it in items:
                    if it.get("key") not in src[2]:
                        rep.problem(what, f"volume {name}: {src[0]} {src[1]} has no key {it.get('key')}")
        for c in pod.get("containers") or []:
            cwhat = f"{what} container {c.get('name')}"
            image = str(c.get("image", ""))
            if not SLUICE_IMAGE.search(image.split("@")[0].rsplit(":", 1)[0] + ":"):
                continue
            csc = c.get("securityContext") or {}
            if not (csc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
                rep.problem(cwhat, "securityContext.runAsNonRoot must be true")
            if csc.get("readOnlyRootFilesystem") is not True:
                rep.problem(cwhat, "securityContext.readOnlyRootFilesystem must be true")
            if csc.get("allowPrivilegeEscalation") is not False:
                rep.problem(cwhat, "securityContext.allowPrivilegeEscalation must be false")
            if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
                rep.problem(cwhat, "securityContext.capabilities.drop must contain ALL")
            if ((psc.get("seccompProfile") or csc.get("seccompProfile") or {}).get("type")) != "RuntimeDefault":
                rep.problem(cwhat, "seccompProfile.type must be RuntimeDefault")
            req = (c.get("resources") or {}).get("requests") or {}
            for r in ("cpu", "memory"):
                if r not in req:
                    rep.problem(cwhat, f"resources.requests.{r} is missing")
            ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
            if ports.get("grpc") != 10901 or ports.get("http") != 10902:
                rep.problem(cwhat, f"ports must be grpc 10901 and http 10902, got {ports}")
            for probe, path in (("livenessProbe", "/-/healthy"), ("readinessProbe", "/-/ready"),
                                ("startupProbe", None)):
                p = c.get(probe)
                if p is None:
                    if path is not None:
                        rep.problem(cwhat, f"{probe} is missing")
                    continue
                hg = p.get("httpGet") or {}
                if path is not None and hg.get("path") != path:
                    rep.problem(cwhat, f"{probe} must GET {path}, not {hg.get('path')}")
                if hg.get("port") not in ports and hg.get("port") not in ports.values():
                    rep.problem(cwhat, f"{probe} port {hg.get('port')} is not a container port")
            mounts = c.get("volumeMounts") or []
            for m in mounts:
                if m.get("name") not in volumes and m.get("name") not in claims:
                    rep.problem(cwhat, f"volumeMount {m.get('name')} has no volume")
            args = [str(a) for a in (c.get("command") or [])[1:] + (c.get("args") or [])] \
                if c.get("command") else [str(a) for a in c.get("args") or []]
            check_sluice_args(cwhat, args, c, volumes, claims, objs, rep)
            if args and args[0] == "sidecar":
                check_sidecar_pod(cwhat, args, c, d, volumes, claims, objs, rep)


def split_flags(args: list[str]) -> list[tuple[str, str | None]]:
    out = []
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("--"):
            if "=" in a:
                k, v = a.split("=", 1)
                out.append((k, v))
            elif i + 1 < len(args) and not args[i + 1].startswith("--") and a not in BOOL_FLAGS:
                out.append((a, args[i + 1]))
                i += 1
            else:
                out.append((a, None))
        i += 1
    return out


BOOL_FLAGS = {"--grpc-client-tls-secure", "--grpc-client-tls-skip-verify", "--shipper.upload-compacted",
              "--web.enable-lifecycle", "--web.enable-admin-api", "--web.enable-remote-write-receiver"}


def check_sluice_args(cwhat: str, args: list[str], c: dict, volumes: dict, claims: set, objs: Objects,
                      rep: Report) -> None:
    if not args or args[0] not in SLUICE_SUBCOMMANDS:
        rep.problem(cwhat, f"args must start with a sluice subcommand, got {args[:1]}")
        return
    rep.commands.append({"origin": cwhat, "args": args})
    flags = split_flags(args[1:])
    writable = lambda vol, rest: vol is not None and ("emptyDir" in vol or "persistentVolumeClaim" in vol)
    for flag, value in flags:
        if flag in WRITE_FLAGS and value:
            r = resolve_path(value, c, volumes, claims, objs)
            ok = r is not None and not r[0].get("readOnly") and (
                writable(r[1], r[2]) or r[0].get("name") in claims)
            if not ok:
                rep.problem(cwhat, f"{flag}={value} is not on a writable volume (the root filesystem is read-only)")
        if flag in READ_DIR_FLAGS and value and resolve_path(value, c, volumes, claims, objs) is None:
            rep.problem(cwhat, f"{flag} {value}: no volume is mounted there")
        if flag in FILE_FLAGS and value:
            text = check_file(cwhat, flag, value, c, volumes, claims, objs, rep)
            kind = FILE_FLAGS[flag]
            if kind and text is not None:
                rep.config(f"{cwhat} {flag}", kind, text)
                check_config_paths(f"{cwhat} {flag}", kind, text, c, volumes, claims, objs, rep)
        if flag == "--endpoint" and value and value.startswith("dnssrv+_grpc._tcp."):
            svc = value[len("dnssrv+_grpc._tcp."):].split(".")[0]
            s = objs.services.get(svc)
            if s is not None:
                ss = s.get("spec") or {}
                if ss.get("clusterIP") != "None":
                    rep.problem(cwhat, f"{value}: Service {svc} must be headless (clusterIP: None) for dnssrv+")
                if "grpc" not in {p.get("name") for p in ss.get("ports") or []}:
                    rep.problem(cwhat, f"{value}: Service {svc} has no port named grpc (no _grpc._tcp SRV record)")


def volume_path(path: str, c: dict, volumes: dict, claims: set, objs: Objects) -> tuple[str, str] | None:
    """(volume name, path within the volume) of a path in container `c`: the same pair in two containers of a pod
    means the same file."""
    r = resolve_path(path, c, volumes, claims, objs)
    return None if r is None else (r[0].get("name"), r[2])


def container_args(c: dict) -> list[str]:
    """The arguments of a container, with a `sh -c SCRIPT NAME ARGS...` wrapper's SCRIPT and NAME dropped."""
    cmd = [str(a) for a in c.get("command") or []]
    args = [str(a) for a in c.get("args") or []]
    if len(cmd) >= 2 and cmd[0].endswith("sh") and cmd[1] == "-c":
        return cmd[4:] + args
    return cmd[1:] + args if cmd else args


PROMETHEUS_DEFAULTS = {"--storage.tsdb.path": "data/", "--config.file": "prometheus.yml",
                       "--web.listen-address": "0.0.0.0:9090"}


def check_sidecar_pod(cwhat: str, args: list[str], c: dict, d: dict, volumes: dict, claims: set, objs: Objects,
                      rep: Report) -> None:
    """`sluice sidecar` and the Prometheus beside it: they share the TSDB and the rendered config, Prometheus cuts 2h
    blocks it never compacts (the shipper uploads each block once) and has the lifecycle API the reloader posts to,
    the config template's $(VARS) are in the sidecar's environment, and each replica has its own external labels."""
    pod = podspec_of(d) or {}
    sflags = dict(split_flags(args[1:]))
    proms = [p for p in pod.get("containers") or [] if p is not c and (
        "prometheus" in str(p.get("image", "")).split("@")[0].rsplit(":", 1)[0].rsplit("/", 1)[-1]
        or any(a.startswith("--storage.tsdb.path") for a in container_args(p)))]
    if len(proms) != 1:
        rep.problem(cwhat, f"a sidecar needs exactly one Prometheus container in its pod, found {len(proms)}")
        return
    prom = proms[0]
    pwhat = f"{cwhat.rsplit(' container ', 1)[0]} container {prom.get('name')}"
    pflags = {**PROMETHEUS_DEFAULTS, **dict(split_flags(container_args(prom)))}
    where = lambda path, cont: volume_path(path, cont, volumes, claims, objs)

    mn, mx = pflags.get("--storage.tsdb.min-block-duration"), pflags.get("--storage.tsdb.max-block-duration")
    if not mn or mn != mx:
        rep.problem(pwhat, "Prometheus must run with --storage.tsdb.min-block-duration equal to "
                           f"--storage.tsdb.max-block-duration (2h), got {mn} and {mx}: local compaction makes "
                           "blocks the sidecar does not upload")
    tsdb = sflags.get("--tsdb.path") or "./data"
    a, b = where(tsdb, c), where(pflags["--storage.tsdb.path"], prom)
    if a is None or a != b:
        rep.problem(cwhat, f"--tsdb.path {tsdb} is not Prometheus' --storage.tsdb.path "
                           f"{pflags['--storage.tsdb.path']} (volume and path {a} vs {b})")
    rendered = sflags.get("--reloader.config-envsubst-file") or sflags.get("--reloader.config-file")
    if rendered:
        a, b = where(rendered, c), where(pflags["--config.file"], prom)
        if a is None or a != b:
            rep.problem(cwhat, f"the reloader writes or watches {rendered}, but Prometheus reads "
                               f"--config.file={pflags['--config.file']} (volume and path {a} vs {b})")
        cmd = prom.get("command") or []
        if len(cmd) >= 3 and str(cmd[1]) == "-c" and pflags["--config.file"] not in str(cmd[2]):
            rep.problem(pwhat, f"the command's script does not wait for {pflags['--config.file']}")
    rule_dirs = [v for f, v in split_flags(args[1:]) if f == "--reloader.rule-dir" and v]
    if (rendered or rule_dirs) and sflags.get("--reloader.method", "http") == "http" \
            and "--web.enable-lifecycle" not in pflags:
        rep.problem(pwhat, "the sidecar reloads Prometheus with POST /-/reload: Prometheus needs "
                           "--web.enable-lifecycle")
    for rd in rule_dirs:
        a = where(rd, c)
        if a is not None and a[0] not in {m.get("name") for m in prom.get("volumeMounts") or []}:
            rep.problem(cwhat, f"--reloader.rule-dir {rd}: volume {a[0]} is not mounted in Prometheus")
    url = sflags.get("--prometheus.url") or "http://localhost:9090"
    m = re.match(r"^https?://(localhost|127\.0\.0\.1|\[::1\])(?::(\d+))?(/.*)?$", url)
    port = pflags["--web.listen-address"].rsplit(":", 1)[-1]
    if not m or (m.group(2) or ("443" if url.startswith("https") else "80")) != port:
        rep.problem(cwhat, f"--prometheus.url {url} is not Prometheus in this pod (it listens on "
                           f"{pflags['--web.listen-address']})")

    tmpl = sflags.get("--reloader.config-file")
    if not tmpl:
        rep.problem(cwhat, "no --reloader.config-file: Prometheus' external labels cannot differ per replica")
        return
    text = check_file(cwhat, "--reloader.config-file", tmpl, c, volumes, claims, objs, rep)
    if text is None:
        return
    env = {e.get("name") for e in c.get("env") or []}
    used = set(re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", text))
    for v in sorted(used - env):
        rep.problem(cwhat, f"the config template {tmpl} uses $({v}), but the sidecar container has no env {v}")
    try:
        cfg = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        rep.problem(cwhat, f"the config template {tmpl} is not YAML: {e}")
        return
    ext = ((cfg.get("global") or {}).get("external_labels")) or {}
    if not ext:
        rep.problem(cwhat, f"the config template {tmpl} has no global.external_labels: the sidecar requires them")
    elif (d.get("spec") or {}).get("replicas", 1) != 1 and not any("$(" in str(v) for v in ext.values()):
        rep.problem(cwhat, f"the config template {tmpl}: with several replicas one external label must differ per pod "
                           "(e.g. replica: $(POD_NAME)), or the replicas' series collide")
    per_pod = {str(k) for k, v in ext.items() if "$(" in str(v)}
    if per_pod and (d.get("spec") or {}).get("serviceName"):
        objs.sidecar_replica_labels[d["spec"]["serviceName"]] = per_pod
    for rf in cfg.get("rule_files") or []:
        rdir = str(rf).rsplit("/", 1)[0]
        if where(rdir, prom) is None:
            rep.problem(pwhat, f"rule_files {rf}: no volume is mounted at {rdir} in Prometheus")


def check_file(cwhat, flag, path, c, volumes, claims, objs: Objects, rep: Report) -> str | None:
    """Checks that `path` lies on a mount whose source has the file; returns its text when known."""
    r = resolve_path(path, c, volumes, claims, objs)
    if r is None:
        rep.problem(cwhat, f"{flag} {path}: no volume is mounted there")
        return None
    mount, vol, key = r
    if vol is None:
        return None
    src = objs.source_keys(vol)
    if src is None:
        return None
    kind, name, keys = src
    if keys is None:
        return None  # external object, reported once at the volume
    items = (vol.get("configMap") or vol.get("secret") or {}).get("items")
    if items:
        mapping = {it.get("path"): it.get("key") for it in items}
        if key not in mapping:
            rep.problem(cwhat, f"{flag} {path}: {kind} {name} volume does not project {key}")
            return None
        key = mapping[key]
    if key not in keys:
        rep.problem(cwhat, f"{flag} {path}: {kind} {name} has no key {key!r} (has {sorted(keys)})")
        return None
    return objs.content(kind, name, key)


def check_config_paths(origin, kind, text, c, volumes, claims, objs, rep) -> None:
    """Files a Sluice config names (TLS material) must lie on a mount of the same container."""
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as e:
        rep.problem(origin, f"YAML does not parse: {e}")
        return
    for p in config_files(kind, cfg):
        if resolve_path(p, c, volumes, claims, objs) is None:
            rep.problem(origin, f"names {p}, but no volume is mounted there")
        else:
            check_file(origin, "file", p, c, volumes, claims, objs, rep)


def config_files(kind: str, cfg) -> list[str]:
    out = []
    if not isinstance(cfg, dict):
        return out
    if kind == "sd-config":
        ccs = [cfg.get("default_client_config")] + [e.get("client_config") for e in cfg.get("endpoints") or []
                                                   if isinstance(e, dict)]
        for cc in ccs:
            tls = (cc or {}).get("tls_config") or {}
            out += [tls[k] for k in ("ca_file", "cert_file", "key_file") if tls.get(k)]
    elif kind == "web-config":
        tls = cfg.get("tls_server_config") or {}
        out += [tls[k] for k in ("cert_file", "key_file", "client_ca_file") if tls.get(k)]
    return out


def check_replica_labels(objs: Objects, rep: Report) -> None:
    """A querier that discovers sidecars here removes their per-pod external labels (--query.replica-label), or the
    pods of an HA pair stay separate series."""
    for origin, d in objs.workloads:
        for c in (podspec_of(d) or {}).get("containers") or []:
            args = [str(a) for a in c.get("args") or []]
            if not args or args[0] != "query":
                continue
            flags = split_flags(args[1:])
            removed = {x.strip() for f, v in flags if f == "--query.replica-label" and v for x in v.split(",")}
            for f, v in flags:
                if f in ("--endpoint", "--endpoint-strict") and v and v.startswith("dnssrv+_grpc._tcp."):
                    svc = v[len("dnssrv+_grpc._tcp."):].split(".")[0]
                    missing = objs.sidecar_replica_labels.get(svc, set()) - removed
                    if missing:
                        rep.problem(f"{origin} {describe(d)} container {c.get('name')}",
                                    f"{v}: the sidecars' per-pod external labels {sorted(missing)} are not "
                                    "--query.replica-label values, so the HA pair is not deduplicated")


def check_services(objs: Objects, rep: Report) -> None:
    pods = [(template_labels(d), d) for _, d in objs.workloads]
    for origin, d in objs.docs:
        kind = d.get("kind")
        what = f"{origin} {describe(d)}"
        spec = d.get("spec") or {}
        if kind == "Service":
            sel = spec.get("selector") or {}
            matched = [w for labels, w in pods if selects(sel, labels)]
            if not matched:
                rep.problem(what, f"selector {sel} matches no pod template here")
            names = {p.get("name") for w in matched for c in (podspec_of(w) or {}).get("containers") or []
                     for p in c.get("ports") or []}
            for p in spec.get("ports") or []:
                tp = p.get("targetPort")
                if isinstance(tp, str) and matched and tp not in names:
                    rep.problem(what, f"targetPort {tp} is no container port of the selected pods")
        elif kind in ("PodDisruptionBudget", "NetworkPolicy"):
            sel = ((spec.get("selector") if kind == "PodDisruptionBudget" else spec.get("podSelector")) or {}) \
                .get("matchLabels") or {}
            if not any(selects(sel, labels) for labels, _ in pods):
                rep.problem(what, f"selector {sel} matches no pod template here")
        elif kind == "Ingress":
            check_ingress(what, d, objs, rep)


def check_ingress(what: str, d: dict, objs: Objects, rep: Report) -> None:
    spec = d.get("spec") or {}
    ann = (d.get("metadata") or {}).get("annotations") or {}
    proto = ann.get("nginx.ingress.kubernetes.io/backend-protocol")
    hosts = set()
    for rule in spec.get("rules") or []:
        hosts.add(rule.get("host"))
        for p in ((rule.get("http") or {}).get("paths")) or []:
            svc = ((p.get("backend") or {}).get("service")) or {}
            s = objs.services.get(svc.get("name"))
            if s is None:
                rep.problem(what, f"backend Service {svc.get('name')} is not defined here")
                continue
            port = svc.get("port") or {}
            sports = (s.get("spec") or {}).get("ports") or []
            if not any(port.get("name") == sp.get("name") or port.get("number") == sp.get("port") for sp in sports):
                rep.problem(what, f"backend port {port} is not a port of Service {svc.get('name')}")
    tls_hosts = set()
    for t in spec.get("tls") or []:
        tls_hosts.update(t.get("hosts") or [])
        sn = t.get("secretName")
        if sn not in objs.secret_keys and sn not in objs.external:
            rep.problem(what, f"TLS Secret {sn} is not defined here (nor made by a Certificate)")
    if proto in ("GRPC", "GRPCS"):
        if hosts - tls_hosts:
            rep.problem(what, f"gRPC hosts without TLS: {sorted(h for h in hosts - tls_hosts if h)}")
        if ann.get("nginx.ingress.kubernetes.io/auth-tls-verify-client") != "on":
            rep.problem(what, 'a gRPC Ingress must set auth-tls-verify-client: "on" (client certificates)')
        secret = ann.get("nginx.ingress.kubernetes.io/auth-tls-secret", "")
        if "/" not in secret:
            rep.problem(what, f"auth-tls-secret must be namespace/name, got {secret!r}")
        else:
            name = secret.split("/", 1)[1]
            keys = objs.secret_keys.get(name)
            if keys is None and name not in objs.external:
                rep.problem(what, f"auth-tls-secret {secret} is not defined here")
            elif keys is not None and "ca.crt" not in keys:
                rep.problem(what, f"auth-tls-secret {secret} has no ca.crt")
        if proto == "GRPCS" and ann.get("nginx.ingress.kubernetes.io/proxy-ssl-verify") != "on":
            rep.problem(what, "a GRPCS backend must be verified (proxy-ssl-verify: on)")
    elif proto is not None:
        rep.problem(what, f"unexpected backend-protocol {proto!r}")


def collect_unreferenced_configs(objs: Objects, prefix: str, rep: Report) -> None:
    """Sluice configs in ConfigMaps/Secrets by key name (also those no flag names)."""
    for origin, d in objs.docs:
        kind = d.get("kind")
        if kind not in ("ConfigMap", "Secret"):
            continue
        data = {**(d.get("data") or {}), **(d.get("stringData") or {})} if kind == "Secret" else d.get("data") or {}
        for key, text in data.items():
            ck = config_kind(key)
            if ck and isinstance(text, str):
                rep.config(f"{origin} {describe(d)}[{key}]", ck, text)


def config_kind(name: str) -> str | None:
    for rx, kind in CONFIG_NAME:
        if rx.match(name):
            return kind
    return None


def check_doc_set(label: str, docs: list[tuple[str, dict]], rep: Report, external: set[str]) -> Objects:
    for origin, d in docs:
        validate_object(origin, d, rep)
    objs = Objects([(o, d) for o, d in docs if d.get("kind") != "Kustomization"], external)
    check_workloads(label, objs, rep)
    check_replica_labels(objs, rep)
    check_services(objs, rep)
    collect_unreferenced_configs(objs, label, rep)
    return objs


def check_manifest_dir(root: Path, d: Path, rep: Report) -> int:
    rel = d.relative_to(root.parent)
    files = sorted(p for p in d.iterdir() if p.suffix in (".yaml", ".yml"))
    if not files:
        rep.problem(str(rel), "no manifests")
        return 0
    docs = []
    for f in files:
        docs += load_yaml_docs(f, rep, str(f.relative_to(root.parent)))
    kust = d / "kustomization.yaml"
    if not kust.is_file():
        rep.problem(str(rel), "no kustomization.yaml")
    else:
        k = (yaml.safe_load(kust.read_text()) or {})
        listed = k.get("resources") or []
        for r in listed:
            if not (d / r).is_file():
                rep.problem(f"{rel}/kustomization.yaml", f"resource {r} does not exist")
        unlisted = {f.name for f in files} - set(listed) - {"kustomization.yaml"}
        for u in sorted(unlisted):
            rep.problem(f"{rel}/kustomization.yaml", f"{u} is not listed in resources")
        ns = k.get("namespace")
        for origin, doc in docs:
            dns = (doc.get("metadata") or {}).get("namespace")
            if ns and dns and dns != ns and doc.get("kind") != "Namespace":
                rep.problem(origin, f"namespace {dns} differs from the kustomization's {ns}")
        images = {i.get("name") for i in k.get("images") or []}
        for _, doc in docs:
            for c in (podspec_of(doc) or {}).get("containers") or []:
                name = str(c.get("image", "")).split("@")[0].rsplit(":", 1)[0]
                if images and name not in images:
                    rep.problem(f"{rel}/kustomization.yaml", f"image {name} has no images: entry")
    check_doc_set(str(rel), docs, rep, external=set())
    return len(docs)


def check_manifests(root: Path, section: str, rep: Report) -> None:
    base = root / section
    dirs = sorted({p.parent for p in base.rglob("*.yaml")} | {p.parent for p in base.rglob("*.yml")})
    n = 0
    for d in dirs:
        n += check_manifest_dir(root, d, rep)
    kinds = "Kubernetes " + " and ".join(KUBE_VERSIONS)
    rep.checked.append(f"{section}/: {n} documents in {len(dirs)} kustomization(s): {kinds} schemas (strict), "
                       "cert-manager and Kustomization structural schemas, cross-references")


# ---------------------------------------------------------------------------------------------------------------
# Helm

# Objects the chart references but, by design, does not create with that values file (the user or another
# release provides them).
HELM_EXTERNAL = {
    "values.yaml": {"sluice-store-tls", "sluice-query-tls"},
    "plaintext-values.yaml": set(),
    "observee-values.yaml": {"sluice-observer-ca-cert", "sluice-eu1-ingress-tls"},
    "observer-values.yaml": {"sluice-observer-client-tls", "sluice-observee-cas"},
    "sidecar-values.yaml": {"sluice-sidecar-tls", "sluice-query-tls", "sluice-objstore"},
}


def check_helm(root: Path, rep: Report) -> None:
    chart_dir = root / "helm" / "sluice"
    rel = "deploy/helm/sluice"
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    if chart.get("apiVersion") != "v2" or not re.match(r"^\d+\.\d+\.\d+", str(chart.get("version", ""))):
        rep.problem(f"{rel}/Chart.yaml", "needs apiVersion v2 and a SemVer version")
    try:
        schema = json.loads((chart_dir / "values.schema.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        rep.problem(f"{rel}/values.schema.json", f"does not parse: {e}")
        return
    if schema.get("$schema") != "http://json-schema.org/draft-07/schema#":
        rep.problem(f"{rel}/values.schema.json", "$schema must be draft-07")
    try:
        jsonschema.Draft7Validator.check_schema(schema)
    except jsonschema.SchemaError as e:
        rep.problem(f"{rel}/values.schema.json", f"not a valid draft-07 schema: {e.message}")
        return
    values_files = [chart_dir / "values.yaml"] + sorted((chart_dir / "ci").glob("*.yaml"))
    value_sets = []
    for vf in values_files:
        vrel = str(vf.relative_to(root.parent))
        try:
            v = yaml.safe_load(vf.read_text()) or {}
        except yaml.YAMLError as e:
            rep.problem(vrel, f"YAML does not parse: {e}")
            continue
        value_sets.append((vf, v))
    defaults = value_sets[0][1] if value_sets and value_sets[0][0].name == "values.yaml" else {}
    for vf, v in value_sets:
        merged = deep_merge(copy.deepcopy(defaults), v)
        for err in schema_errors(schema, merged, jsonschema.Draft7Validator):
            rep.problem(str(vf.relative_to(root.parent)), f"values.schema.json: {err}")
    rep.checked.append(f"helm/sluice: values.schema.json is valid draft-07; {len(value_sets)} values files "
                       "(values.yaml, ci/*.yaml over the defaults) validate against it with jsonschema")
    try:
        import helm_python as helm
        import helm_python.chart as helm_chart
    except ImportError as e:
        rep.problem(rel, f"cannot render the chart: helm-python-sdk is missing ({e}); "
                         "install with `pip install -r tests/requirements.txt`")
        return
    lint = helm_chart.lint(str(chart_dir), strict=True)
    for m in lint.get("messages") or []:
        if m.get("severity", 0) >= 2:
            rep.problem(f"{rel} (helm lint --strict)", f"{m.get('path')}: {m.get('error')}")
    for e in lint.get("errors") or []:
        rep.problem(f"{rel} (helm lint --strict)", str(e))
    rendered_templates = set()
    ndocs = 0
    with helm.Chart.load(str(chart_dir)) as ch:
        for vf, v in value_sets:
            label = f"{rel} rendered with {vf.relative_to(chart_dir)}"
            try:
                out = ch.render(None if vf.name == "values.yaml" else v, name="sluice", namespace="monitoring",
                                is_install=True)
            except Exception as e:  # HelmRenderError, HelmValuesError
                rep.problem(label, f"helm template failed: {type(e).__name__}: {e}")
                continue
            docs = []
            for tpl, text in sorted(out.items()):
                if not tpl.endswith((".yaml", ".yml")):
                    continue
                try:
                    parsed = [x for x in yaml.safe_load_all(text) if x is not None]
                except yaml.YAMLError as e:
                    rep.problem(f"{label}: {tpl}", f"rendered YAML does not parse: {e}")
                    continue
                if parsed:
                    rendered_templates.add(tpl.split("/", 1)[1])
                for i, x in enumerate(parsed):
                    docs.append((f"{label}: {tpl}#{i}", x))
            ndocs += len(docs)
            check_doc_set(label, docs, rep, external=HELM_EXTERNAL.get(vf.name, set()))
    templates = {str(p.relative_to(chart_dir)) for p in (chart_dir / "templates").glob("*.yaml")}
    for t in sorted(templates - rendered_templates):
        rep.problem(rel, f"{t} renders nothing with any values file: it is not validated (add a ci/ values file)")
    rep.checked.append(f"helm/sluice: `helm lint --strict` and `helm template` (Helm's Go SDK via helm-python-sdk) "
                       f"with {len(value_sets)} values files, {ndocs} rendered documents through the Kubernetes "
                       f"checks; Helm's own values.schema.json validation ran in each render")


def deep_merge(base, over):
    if isinstance(base, dict) and isinstance(over, dict):
        for k, v in over.items():
            base[k] = deep_merge(base.get(k), v) if k in base else v
        return base
    return over


# ---------------------------------------------------------------------------------------------------------------
# docker/

DOCKER_INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
                       "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


def parse_dockerfile(text: str) -> list[tuple[int, str, str]]:
    """(line, INSTRUCTION, arguments) with continuations joined and comments dropped."""
    out, buf, start = [], "", 0
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not buf and (not s or s.startswith("#")):
            continue
        if buf and s.startswith("#"):
            continue
        if not buf:
            start = n
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        buf += s
        word, _, rest = buf.partition(" ")
        out.append((start, word, rest.strip()))
        buf = ""
    if buf:
        out.append((start, "<unterminated>", buf))
    return out


def check_dockerfile(root: Path, rep: Report) -> None:
    path = root / "docker" / "Dockerfile"
    rel = "deploy/docker/Dockerfile"
    text = path.read_text()
    if not text.startswith("# syntax=docker/dockerfile:1"):
        rep.problem(rel, "first line must be the parser directive `# syntax=docker/dockerfile:1` (cache mounts)")
    stages: list[dict] = []
    for line, ins, args in parse_dockerfile(text):
        if ins != ins.upper() or ins not in DOCKER_INSTRUCTIONS:
            rep.problem(f"{rel}:{line}", f"unknown instruction {ins}")
            continue
        if ins == "FROM":
            m = re.match(r"^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$", args, re.I)
            if not m:
                rep.problem(f"{rel}:{line}", f"malformed FROM {args}")
                continue
            stages.append({"image": m.group(1), "name": m.group(2), "ins": [], "line": line})
            continue
        if not stages:
            if ins != "ARG":
                rep.problem(f"{rel}:{line}", f"{ins} before the first FROM")
            continue
        stages[-1]["ins"].append((line, ins, args))
        if ins in ("COPY", "ADD"):
            parts = shlex.split(args)
            opts = [p for p in parts if p.startswith("--")]
            paths = [p for p in parts if not p.startswith("--")]
            frm = [o.split("=", 1)[1] for o in opts if o.startswith("--from=")]
            if frm:
                names = [s["name"] for s in stages[:-1]]
                if frm[0] not in names and not frm[0].isdigit():
                    rep.problem(f"{rel}:{line}", f"COPY --from={frm[0]} names no earlier stage ({names})")
            else:
                for src in paths[:-1]:
                    if src.startswith(("http://", "https://")):
                        rep.problem(f"{rel}:{line}", "no downloads in COPY/ADD")
                    elif not (root.parent / src).exists():
                        rep.problem(f"{rel}:{line}", f"build-context path {src} does not exist")
    if len(stages) < 2:
        rep.problem(rel, "must be multi-stage (a builder and a runtime stage)")
        return
    builder = next((s for s in stages if s["name"] == "builder"), None)
    if builder is None:
        rep.problem(rel, "no stage named builder")
    else:
        runs = " ".join(a for _, i, a in builder["ins"] if i == "RUN")
        if "wasm32-wasip2" not in runs:
            rep.problem(rel, "the builder must install the wasm32-wasip2 target (the built-in plugins)")
        if "cargo build --release" not in runs or "-p sluice" not in runs:
            rep.problem(rel, "the builder must run `cargo build --release ... -p sluice`")
    final = stages[-1]
    users = [a for _, i, a in final["ins"] if i == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        rep.problem(rel, f"the final stage ({final['name']}) must switch to a non-root USER")
    if not any(i == "COPY" and "--from=builder" in a and "sluice" in a for _, i, a in final["ins"]):
        rep.problem(rel, "the final stage must copy the sluice binary from the builder")
    eps = [a for _, i, a in final["ins"] if i == "ENTRYPOINT"]
    try:
        ep = json.loads(eps[-1]) if eps else None
    except json.JSONDecodeError:
        ep = None
    if not (isinstance(ep, list) and ep and ep[0].endswith("/sluice")):
        rep.problem(rel, "the final stage's ENTRYPOINT must be the exec form running sluice")
    ignore = root / "docker" / "Dockerfile.dockerignore"
    if not ignore.is_file() or "target" not in ignore.read_text().split():
        rep.problem("deploy/docker/Dockerfile.dockerignore", "must exist and exclude target")
    rep.checked.append(f"docker/Dockerfile: {len(stages)} stages parsed (instructions, COPY sources and --from "
                       "stages, wasm32-wasip2 in the builder, non-root USER and sluice ENTRYPOINT in the final "
                       "stage); not built (no Docker daemon offline)")


COMPOSE_SERVICES = {"certs", "seed-eu1", "seed-us1", "store-eu1-a", "store-eu1-b", "store-us1-a", "store-us1-b",
                    "query-eu1", "query-us1", "query-observer"}
COMPOSE_SERVICE_KEYS = {"image", "build", "command", "entrypoint", "environment", "volumes", "ports", "depends_on",
                        "restart", "read_only", "cap_drop", "security_opt", "tmpfs", "user", "healthcheck"}


def check_compose(root: Path, rep: Report) -> None:
    d = root / "docker"
    rel = "deploy/docker/compose.yaml"
    try:
        c = yaml.safe_load((d / "compose.yaml").read_text())
    except yaml.YAMLError as e:
        rep.problem(rel, f"YAML does not parse: {e}")
        return
    if not isinstance(c, dict) or not isinstance(c.get("services"), dict):
        rep.problem(rel, "no services")
        return
    for k in c:
        if k not in ("name", "services", "volumes", "networks", "configs", "secrets") and not k.startswith("x-"):
            rep.problem(rel, f"unknown top-level key {k}")
    services = c["services"]
    named_volumes = set((c.get("volumes") or {}).keys())
    for missing in sorted(COMPOSE_SERVICES - set(services)):
        rep.problem(rel, f"service {missing} is missing")
    for name, s in services.items():
        what = f"{rel} service {name}"
        if not isinstance(s, dict):
            rep.problem(what, "not a mapping")
            continue
        for k in s:
            if k not in COMPOSE_SERVICE_KEYS:
                rep.problem(what, f"unknown key {k}")
        if "image" not in s and "build" not in s:
            rep.problem(what, "needs image or build")
        b = s.get("build")
        if isinstance(b, dict):
            ctx = (d / b.get("context", ".")).resolve()
            if not (ctx / b.get("dockerfile", "Dockerfile")).is_file():
                rep.problem(what, f"build: {b.get('dockerfile')} not found in context {ctx}")
        deps = s.get("depends_on") or {}
        for dep, cond in (deps.items() if isinstance(deps, dict) else ((x, None) for x in deps)):
            if dep not in services:
                rep.problem(what, f"depends_on {dep}: no such service")
            cond = (cond or {}).get("condition", "service_started")
            if cond not in ("service_started", "service_healthy", "service_completed_successfully"):
                rep.problem(what, f"depends_on {dep}: unknown condition {cond}")
        mounts = {}
        for v in s.get("volumes") or []:
            parts = str(v).split(":")
            if len(parts) < 2:
                rep.problem(what, f"volume {v}: expected SOURCE:TARGET[:ro]")
                continue
            src, dst = parts[0], parts[1]
            if src.startswith((".", "/")):
                if not (d / src).exists():
                    rep.problem(what, f"bind mount {src} does not exist")
            elif src not in named_volumes:
                rep.problem(what, f"volume {src} is not declared under top-level volumes")
            mounts[dst] = src
        for p in s.get("ports") or []:
            if not str(p).startswith("127.0.0.1:"):
                rep.problem(what, f"port {p} must be published on 127.0.0.1 only")
        cmd = s.get("command")
        if isinstance(cmd, list) and cmd and cmd[0] in SLUICE_SUBCOMMANDS:
            if s.get("read_only") is not True or "ALL" not in (s.get("cap_drop") or []):
                rep.problem(what, "sluice services run with read_only: true and cap_drop: [ALL]")
            args = [str(a) for a in cmd]
            rep.commands.append({"origin": what, "args": args})
            for flag, value in split_flags(args[1:]):
                if flag in FILE_FLAGS and value:
                    check_compose_file(what, flag, value, mounts, d, rep)
    rep.checked.append(f"docker/compose.yaml: {len(services)} services (expected set, keys, build contexts, "
                       "depends_on, bind mounts and named volumes, ports on 127.0.0.1, read-only sluice "
                       "containers, files named by flags and configs mounted); not run (no Docker daemon offline)")


def check_compose_file(what, flag, value, mounts, d: Path, rep: Report) -> None:
    for dst, src in sorted(mounts.items(), key=lambda x: -len(x[0])):
        if value == dst or value.startswith(dst.rstrip("/") + "/"):
            if src.startswith((".", "/")):
                host = d / src / value[len(dst):].lstrip("/") if value != dst else d / src
                if not host.is_file():
                    rep.problem(what, f"{flag} {value}: {host} does not exist")
                    return
                kind = FILE_FLAGS[flag]
                if kind and config_kind(host.name) != kind:
                    rep.problem(what, f"{flag} {value}: {host.name} is not named like a {kind} config")
                if kind:
                    try:
                        cfg = yaml.safe_load(host.read_text())
                    except yaml.YAMLError:
                        cfg = None
                    for p in config_files(kind, cfg):
                        check_compose_file(f"{what} ({host.name})", "file", p, mounts, d, rep)
            elif src == "certs":
                rep.compose_cert_files.append(value[len(dst):].lstrip("/"))
            return
    rep.problem(what, f"{flag} {value}: nothing is mounted there")


def check_scripts(root: Path, rep: Report) -> None:
    scripts = sorted((root / "docker").glob("*.sh"))
    for s in scripts:
        r = subprocess.run(["sh", "-n", str(s)], capture_output=True, text=True)
        if r.returncode != 0:
            rep.problem(str(s.relative_to(root.parent)), f"sh -n: {r.stderr.strip()}")
    rep.checked.append(f"docker/*.sh: {len(scripts)} scripts parse (sh -n)")


# ---------------------------------------------------------------------------------------------------------------
# Sluice config files


def check_config_files(root: Path, rep: Report) -> None:
    files = sorted(list((root / "config").glob("*.y*ml")) + list((root / "docker" / "config").glob("*.y*ml")))
    for f in files:
        rel = str(f.relative_to(root.parent))
        kind = config_kind(f.name)
        if kind is None:
            rep.problem(rel, "not named like a Sluice config (objstore*, policies*, endpoints*, web-config*)")
            continue
        text = f.read_text()
        try:
            yaml.safe_load(text)
        except yaml.YAMLError as e:
            rep.problem(rel, f"YAML does not parse: {e}")
            continue
        rep.config(rel, kind, text)
    # The observer's ConfigMap carries the example file verbatim: keep them from drifting apart.
    cm = root / "multicluster" / "observer" / "endpoints.yaml"
    ex = root / "config" / "endpoints.observer.yml"
    if cm.is_file() and ex.is_file():
        doc = yaml.safe_load(cm.read_text())
        if ((doc or {}).get("data") or {}).get("endpoints.yml") != ex.read_text():
            rep.problem("deploy/multicluster/observer/endpoints.yaml",
                        "endpoints.yml differs from deploy/config/endpoints.observer.yml")
    rep.checked.append(f"config/ and docker/config/: {len(files)} Sluice config files parse as YAML and go to "
                       "Sluice's loaders")


def check_web_configs(rep: Report) -> None:
    n = 0
    for c in rep.sluice_configs:
        if c["kind"] != "web-config":
            continue
        n += 1
        try:
            cfg = yaml.safe_load(c["text"])
        except yaml.YAMLError as e:
            rep.problem(c["origin"], f"web-config YAML does not parse: {e}")
            continue
        for err in schema_errors(WEB_CONFIG_SCHEMA, cfg):
            rep.problem(c["origin"], f"web-config: {err}")
    if n:
        rep.not_validated.append(
            f"{n} web-config file(s) (--http.config): no Sluice loader exists yet; checked here against the keys "
            "and values of Prometheus' web-config format only")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("deploy_dir", nargs="?", default=str(Path(__file__).resolve().parent))
    ap.add_argument("--only", default=",".join(SECTIONS))
    ap.add_argument("--report", help="write the JSON report here")
    a = ap.parse_args()
    root = Path(a.deploy_dir).resolve()
    only = set(a.only.split(","))
    unknown = only - set(SECTIONS)
    if unknown:
        ap.error(f"unknown sections {sorted(unknown)}")
    rep = Report()
    steps = [
        ("config", lambda: check_config_files(root, rep)),
        ("kubernetes", lambda: check_manifests(root, "kubernetes", rep)),
        ("multicluster", lambda: check_manifests(root, "multicluster", rep)),
        ("helm", lambda: check_helm(root, rep)),
        ("docker", lambda: (check_dockerfile(root, rep), check_compose(root, rep), check_scripts(root, rep))),
    ]
    for name, step in steps:
        if name in only:
            try:
                step()
            except Exception as e:  # a crash in a check is a problem, reported with its place
                import traceback
                rep.problem(name, f"validator crashed: {type(e).__name__}: {e}\n{traceback.format_exc()}")
    check_web_configs(rep)
    if "multicluster" in only or "helm" in only:
        rep.not_validated.append(
            "cert-manager Issuer/Certificate: not in kubernetes-validate's schemas; checked against structural "
            "schemas in deploy/validate.py (fields, types, enums, required), not cert-manager's CRDs")
    if "docker" in only:
        rep.not_validated.append("Dockerfile and compose.yaml: parsed and cross-checked, not built or run "
                                 "(no Docker daemon here)")
    for line in rep.checked:
        print(f"ok      {line}")
    for line in rep.not_validated:
        print(f"partial {line}")
    kinds = {}
    for c in rep.sluice_configs:
        kinds[c["kind"]] = kinds.get(c["kind"], 0) + 1
    places = sum(len(c["origins"]) for c in rep.sluice_configs)
    print(f"found   {len(rep.sluice_configs)} distinct Sluice configs in {places} places for the loaders {kinds}, "
          f"{len(rep.commands)} sluice command lines for the flag check")
    for p in rep.problems:
        print(f"PROBLEM {p}")
    if a.report:
        Path(a.report).write_text(json.dumps(rep.to_json(), indent=1))
    print(f"{len(rep.problems)} problem(s)")
    return 1 if rep.problems else 0


if __name__ == "__main__":
    sys.exit(main())
