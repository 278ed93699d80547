{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name; components append -store / -query / -sidecar, so leave room for them. */}}
{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "sluice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sluice
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: include "sluice.selectorLabels" (list . "store") */}}
{{- define "sluice.selectorLabels" -}}
{{- $ctx := index . 0 -}}
app.kubernetes.io/name: {{ include "sluice.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "sluice.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "sluice.storeTlsSecret" -}}
{{- default (printf "%s-store-tls" (include "sluice.fullname" .)) .Values.tls.store.secretName -}}
{{- end -}}

{{- define "sluice.queryTlsSecret" -}}
{{- default (printf "%s-query-tls" (include "sluice.fullname" .)) .Values.tls.query.secretName -}}
{{- end -}}

{{- define "sluice.sidecarTlsSecret" -}}
{{- default (printf "%s-sidecar-tls" (include "sluice.fullname" .)) .Values.tls.sidecar.secretName -}}
{{- end -}}

{{- define "sluice.objstoreSecret" -}}
{{- default (printf "%s-objstore" (include "sluice.fullname" .)) .Values.store.objstore.existingSecret -}}
{{- end -}}

{{/* The bucket the sidecar uploads to: its own existingSecret, else the store's objstore Secret. */}}
{{- define "sluice.sidecarObjstoreSecret" -}}
{{- default (include "sluice.objstoreSecret" .) .Values.sidecar.objstore.existingSecret -}}
{{- end -}}

{{/* Whether the chart makes the objstore Secret from store.objstore.config: the store or the sidecar uses it. */}}
{{- define "sluice.objstoreSecretNeeded" -}}
{{- if not .Values.store.objstore.existingSecret -}}
{{- if or .Values.store.enabled (and .Values.sidecar.enabled .Values.sidecar.objstore.enabled (not .Values.sidecar.objstore.existingSecret)) -}}
true
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The DNS name the store's certificate carries and the querier verifies. */}}
{{- define "sluice.storeServerName" -}}
{{- printf "%s-store.%s.svc" (include "sluice.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- define "sluice.sidecarServerName" -}}
{{- printf "%s-sidecar.%s.svc" (include "sluice.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/* The one name the querier verifies on every endpoint of the release (--grpc-client-server-name): the store's,
     which the sidecar's certificate carries too; the sidecar's own when there is no store. */}}
{{- define "sluice.endpointServerName" -}}
{{- if .Values.store.enabled -}}
{{- include "sluice.storeServerName" . -}}
{{- else -}}
{{- include "sluice.sidecarServerName" . -}}
{{- end -}}
{{- end -}}

{{- define "sluice.queryServerName" -}}
{{- printf "%s-query.%s.svc" (include "sluice.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/* gRPC server TLS flags (mutual TLS: the client CA is required). */}}
{{- define "sluice.grpcServerTlsArgs" -}}
- --grpc-server-tls-cert=/etc/sluice/tls/tls.crt
- --grpc-server-tls-key=/etc/sluice/tls/tls.key
- --grpc-server-tls-client-ca=/etc/sluice/tls/ca.crt
- --grpc-server-tls-min-version={{ .Values.tls.minVersion }}
{{- end -}}

{{/* HTTP probes: HTTPS when the web-config enables TLS. */}}
{{- define "sluice.probeScheme" -}}
{{- if and .Values.tls.enabled .Values.tls.http.enabled }}HTTPS{{ else }}HTTP{{ end -}}
{{- end -}}
