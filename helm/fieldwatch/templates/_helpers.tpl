{{/* Names and labels. */}}
{{- define "fieldwatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fieldwatch.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "fieldwatch.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "fieldwatch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "fieldwatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fieldwatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of one component; call with (dict "root" $ "component" "ingest"). */}}
{{- define "fieldwatch.componentLabels" -}}
{{ include "fieldwatch.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "fieldwatch.componentSelector" -}}
{{ include "fieldwatch.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "fieldwatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fieldwatch.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "fieldwatch.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "fieldwatch.secretName" -}}
{{- default (include "fieldwatch.fullname" .) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "fieldwatch.instrumentsConfigMap" -}}
{{- default (printf "%s-instruments" (include "fieldwatch.fullname" .)) .Values.instruments.existingConfigMap -}}
{{- end -}}

{{- define "fieldwatch.hasInstruments" -}}
{{- if or .Values.instruments.files .Values.instruments.existingConfigMap -}}true{{- end -}}
{{- end -}}

{{/*
The configuration file: the user's `config` with what the chart owns set on
top (listen addresses, brokers, Kafka TLS/SASL, ingest TLS, instruments).
*/}}
{{- define "fieldwatch.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) -}}
{{- $kafka := deepCopy (get $cfg "kafka" | default dict) -}}
{{- $_ := set $kafka "brokers" (required "kafka.bootstrapServers is required" .Values.kafka.bootstrapServers) -}}
{{- $props := dict -}}
{{- range $k, $v := .Values.kafka.clientProperties -}}
{{- $_ := set $props $k (toString $v) -}}
{{- end -}}
{{- $tls := .Values.kafka.tls.enabled -}}
{{- $sasl := .Values.kafka.sasl.enabled -}}
{{- if and $tls $sasl -}}
{{- $_ := set $props "security.protocol" "SASL_SSL" -}}
{{- else if $tls -}}
{{- $_ := set $props "security.protocol" "SSL" -}}
{{- else if $sasl -}}
{{- $_ := set $props "security.protocol" "SASL_PLAINTEXT" -}}
{{- end -}}
{{- if and $tls .Values.kafka.tls.caSecret -}}
{{- $_ := set $props "ssl.ca.location" "/etc/fieldwatch/kafka-ca/ca.crt" -}}
{{- end -}}
{{- if and $tls .Values.kafka.tls.clientCertSecret -}}
{{- $_ := set $props "ssl.certificate.location" "/etc/fieldwatch/kafka-client/tls.crt" -}}
{{- $_ := set $props "ssl.key.location" "/etc/fieldwatch/kafka-client/tls.key" -}}
{{- end -}}
{{- if $sasl -}}
{{- $_ := set $props "sasl.mechanism" .Values.kafka.sasl.mechanism -}}
{{- $_ := set $props "sasl.username" (required "kafka.sasl.username is required with kafka.sasl.enabled" .Values.kafka.sasl.username) -}}
{{- end -}}
{{- $_ := set $kafka "client_properties" $props -}}
{{- $_ := set $cfg "kafka" $kafka -}}
{{- $ingest := deepCopy (get $cfg "ingest" | default dict) -}}
{{- $_ := set $ingest "listen" (printf "0.0.0.0:%v" .Values.ports.grpc) -}}
{{- if .Values.ingest.tls.enabled -}}
{{- $t := dict "cert_file" "/etc/fieldwatch/tls/tls.crt" "key_file" "/etc/fieldwatch/tls/tls.key" -}}
{{- if .Values.ingest.tls.requireClientCert -}}
{{- $_ := set $t "client_ca_file" "/etc/fieldwatch/tls/ca.crt" -}}
{{- end -}}
{{- $_ := set $ingest "tls" $t -}}
{{- end -}}
{{- $_ := set $cfg "ingest" $ingest -}}
{{- $http := deepCopy (get $cfg "http" | default dict) -}}
{{- $_ := set $http "listen" (printf "0.0.0.0:%v" .Values.ports.http) -}}
{{- $_ := set $cfg "http" $http -}}
{{- if include "fieldwatch.hasInstruments" . -}}
{{- $_ := set $cfg "instruments" (list "/etc/fieldwatch/instruments") -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
Seconds the app may take to stop: `fieldwatch` bounds its shutdown by
ingest.shutdown_grace_ms x 2 + 5 s. The pod's grace period adds the preStop
sleep and 5 s of margin; a value set by hand must not be shorter.
Call with (dict "root" $ "component" .Values.ingest).
*/}}
{{- define "fieldwatch.terminationGracePeriodSeconds" -}}
{{- $graceMs := int (dig "ingest" "shutdown_grace_ms" 10000 (.root.Values.config | default dict)) -}}
{{- $appSeconds := div (add (mul $graceMs 2) 5000 999) 1000 -}}
{{- $needed := add $appSeconds (int (.component.preStopSleepSeconds | default 0)) -}}
{{- $set := .component.terminationGracePeriodSeconds -}}
{{- if $set -}}
{{- if le (int $set) (int $needed) -}}
{{- fail (printf "terminationGracePeriodSeconds %v must be above the app's shutdown bound of %v s (config.ingest.shutdown_grace_ms x 2 + 5 s + preStopSleepSeconds)" $set $needed) -}}
{{- end -}}
{{- int $set -}}
{{- else -}}
{{- add $needed 5 -}}
{{- end -}}
{{- end -}}

{{/* Volumes both workloads (ingest Deployment, aggregator StatefulSet) mount. */}}
{{- define "fieldwatch.volumes" -}}
- name: config
  configMap:
    name: {{ include "fieldwatch.fullname" . }}-config
{{- if include "fieldwatch.hasInstruments" . }}
- name: instruments
  configMap:
    name: {{ include "fieldwatch.instrumentsConfigMap" . }}
{{- end }}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.tls.caSecret }}
    items: [{key: ca.crt, path: ca.crt}]
{{- end }}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.clientCertSecret }}
- name: kafka-client
  secret:
    secretName: {{ .Values.kafka.tls.clientCertSecret }}
    items: [{key: tls.crt, path: tls.crt}, {key: tls.key, path: tls.key}]
{{- end }}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}

{{- define "fieldwatch.volumeMounts" -}}
- name: config
  mountPath: /etc/fieldwatch/fieldwatch.yaml
  subPath: fieldwatch.yaml
  readOnly: true
{{- if include "fieldwatch.hasInstruments" . }}
- name: instruments
  mountPath: /etc/fieldwatch/instruments
  readOnly: true
{{- end }}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.caSecret }}
- name: kafka-ca
  mountPath: /etc/fieldwatch/kafka-ca
  readOnly: true
{{- end }}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.clientCertSecret }}
- name: kafka-client
  mountPath: /etc/fieldwatch/kafka-client
  readOnly: true
{{- end }}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* Environment both workloads (ingest Deployment, aggregator StatefulSet) get. */}}
{{- define "fieldwatch.commonEnv" -}}
- name: RUST_LOG
  value: info
{{- if .Values.kafka.sasl.enabled }}
# Read as YAML by fieldwatch's env overrides; the chart's Secret stores it
# JSON-quoted so any password reads as a string.
- name: FIELDWATCH__KAFKA__CLIENT_PROPERTIES__SASL.PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "fieldwatch.secretName" . }}
      key: kafka-sasl-password
{{- end }}
{{- end -}}

{{/* Pod annotations that roll the pods when configuration changes. */}}
{{- define "fieldwatch.checksums" -}}
checksum/config: {{ include "fieldwatch.config" . | sha256sum }}
checksum/instruments: {{ toYaml .Values.instruments.files | sha256sum }}
{{- end -}}
