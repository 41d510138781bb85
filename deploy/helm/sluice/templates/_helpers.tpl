{{- define "sluice.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that never change across upgrades: the only ones in selectors. */}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sluice.labels" -}}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: sluice
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* (dict "ctx" $ "component" name): a component's selector. */}}
{{- define "sluice.componentSelector" -}}
{{ include "sluice.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* (dict "ctx" $ "component" name): a component's full labels. */}}
{{- define "sluice.componentLabels" -}}
{{ include "sluice.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "sluice.image" -}}
image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
imagePullPolicy: {{ .Values.image.pullPolicy }}
{{- end -}}

{{- define "sluice.kafkaTlsDir" -}}/run/secrets/sluice-kafka-tls{{- end -}}

{{/* A container's envFrom: the chart's ConfigMap, then the optional Kafka env Secret. */}}
{{- define "sluice.envFrom" -}}
envFrom:
  - configMapRef:
      name: {{ include "sluice.fullname" . }}
  {{- if .Values.kafka.existingSecret }}
  - secretRef:
      name: {{ .Values.kafka.existingSecret }}
      optional: false
  {{- end }}
{{- end -}}

{{/* The env entries every service gets: Redis URL, Kafka SASL credentials and TLS files. */}}
{{- define "sluice.commonEnv" -}}
- name: SLUICE_REDIS_URL
  {{- if .Values.redis.existingSecret }}
  valueFrom:
    secretKeyRef: {name: {{ .Values.redis.existingSecret }}, key: REDIS_URL}
  {{- else }}
  value: {{ .Values.redis.url | quote }}
  {{- end }}
{{- with .Values.kafka.sasl }}
{{- if .existingSecret }}
- name: SLUICE_KAFKA_PROP_SASL_USERNAME
  valueFrom:
    secretKeyRef: {name: {{ .existingSecret }}, key: {{ .usernameKey }}}
- name: SLUICE_KAFKA_PROP_SASL_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .existingSecret }}, key: {{ .passwordKey }}}
{{- end }}
{{- end }}
{{- with .Values.kafka.tls }}
{{- if .existingSecret }}
{{- if .caKey }}
- name: SLUICE_KAFKA_PROP_SSL_CA_LOCATION
  value: {{ include "sluice.kafkaTlsDir" $ }}/ca.crt
{{- end }}
{{- if or .certKey .keyKey }}
{{- if not (and .certKey .keyKey) }}
{{- fail "kafka.tls: give certKey and keyKey both (mutual TLS) or neither" }}
{{- end }}
- name: SLUICE_KAFKA_PROP_SSL_CERTIFICATE_LOCATION
  value: {{ include "sluice.kafkaTlsDir" $ }}/tls.crt
- name: SLUICE_KAFKA_PROP_SSL_KEY_LOCATION
  value: {{ include "sluice.kafkaTlsDir" $ }}/tls.key
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* (dict "ctx" $ "env" map): extra env entries, sorted by name. */}}
{{- define "sluice.extraEnv" -}}
{{- range $k, $v := .env }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end }}
{{- end -}}

{{/* Volume mounts every service gets (may be empty): the config file, Kafka's TLS files. */}}
{{- define "sluice.commonMounts" -}}
{{- if .Values.config }}
- name: config
  mountPath: /etc/sluice
  readOnly: true
{{- end }}
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: {{ include "sluice.kafkaTlsDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "sluice.commonVolumes" -}}
{{- if .Values.config }}
- name: config
  configMap:
    name: {{ include "sluice.fullname" . }}
    items: [{key: sluice.yaml, path: sluice.yaml}]
{{- end }}
{{- with .Values.kafka.tls }}
{{- if .existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .existingSecret }}
    defaultMode: 0440
    items:
      {{- if .caKey }}
      - {key: {{ .caKey }}, path: ca.crt}
      {{- end }}
      {{- if .certKey }}
      - {key: {{ .certKey }}, path: tls.crt}
      - {key: {{ .keyKey }}, path: tls.key}
      {{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* (dict "ctx" $ "svc" values): pod-level settings shared by every workload. */}}
{{- define "sluice.podSettings" -}}
terminationGracePeriodSeconds: {{ .ctx.Values.terminationGracePeriodSeconds }}
securityContext: {{- toYaml .ctx.Values.podSecurityContext | nindent 2 }}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .svc.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .svc.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .svc.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "sluice.configChecksum" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- end -}}
