{{/* Names and labels. */}}
{{- define "postern.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "postern.fullname" -}}
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

{{- define "postern.selectorLabels" -}}
app.kubernetes.io/name: {{ include "postern.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "postern.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "postern.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* A config value as the server reads it: lists joined with commas, everything a string. */}}
{{- define "postern.configValue" -}}
{{- if kindIs "slice" . -}}{{- join "," . -}}{{- else if kindIs "float64" . -}}{{- int64 . -}}{{- else -}}{{- toString . -}}{{- end -}}
{{- end -}}

{{/* The effective STORE: s3 in cluster mode unless config says otherwise (refused in validate). */}}
{{- define "postern.store" -}}
{{- if hasKey .Values.config "STORE" -}}{{- .Values.config.STORE -}}{{- else if eq .Values.mode "cluster" -}}s3{{- else -}}maildir{{- end -}}
{{- end -}}

{{/* AUTH as a comma-separated string (default passwd-file, as the server). */}}
{{- define "postern.auth" -}}
{{- if hasKey .Values.config "AUTH" -}}{{- include "postern.configValue" .Values.config.AUTH | replace " " "" -}}{{- else -}}passwd-file{{- end -}}
{{- end -}}

{{/* DRAIN_TIMEOUT_MS rounded up to seconds (server default 30000). */}}
{{- define "postern.drainSeconds" -}}
{{- $ms := int64 (include "postern.configValue" (default 30000 .Values.config.DRAIN_TIMEOUT_MS)) -}}
{{- div (add $ms 999) 1000 -}}
{{- end -}}

{{- define "postern.terminationGracePeriodSeconds" -}}
{{- $floor := add (int64 (include "postern.drainSeconds" .)) (int64 .Values.preStopSleepSeconds) -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- add $floor 15 -}}
{{- else -}}
{{- int64 .Values.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{/*
Rendering fails with a message naming the value when the settings cannot work. The STORE/S3/Redis
rules mirror the server's own schema (services/server/src/config.ts), so a bad release never
starts pods that exit with a configuration error.
*/}}
{{- define "postern.validate" -}}
{{- $c := .Values.config -}}
{{- if not (has .Values.mode (list "single" "cluster")) -}}
{{- fail (printf "postern: mode must be single or cluster, not %q" (toString .Values.mode)) -}}
{{- end -}}
{{- range $k := list "POP3_LISTEN" "POP3S_LISTEN" "LMTP_LISTEN" "SMTP_LISTEN" "ADMIN_LISTEN" "DATA_DIR" "TLS_CERT" "TLS_KEY" "PASSWD_FILE" -}}
{{- if hasKey $c $k -}}
{{- fail (printf "postern: config.%s is set by the chart (from ports, delivery.smtp, tls and passwdFile); remove it from config" $k) -}}
{{- end -}}
{{- end -}}
{{- $secretHome := dict "AWS_ACCESS_KEY_ID" "secrets.s3" "AWS_SECRET_ACCESS_KEY" "secrets.s3" "REDIS_PASSWORD" "secrets.redis" "LDAP_BIND_PASSWORD" "secrets.ldap" "CREDENTIAL_CACHE_SECRET" "secrets.credentialCache" -}}
{{- range $k, $home := $secretHome -}}
{{- if hasKey $c $k -}}
{{- fail (printf "postern: config.%s is a secret: put it in a Secret and name it in %s.existingSecret" $k $home) -}}
{{- end -}}
{{- end -}}
{{- if and (hasKey $c "REDIS_URL") (contains "@" (toString $c.REDIS_URL)) -}}
{{- fail "postern: config.REDIS_URL carries a password: put the URL in a Secret and name it in secrets.redis.existingSecret and secrets.redis.urlKey" -}}
{{- end -}}
{{- $store := include "postern.store" . -}}
{{- if not (has $store (list "maildir" "s3")) -}}
{{- fail (printf "postern: config.STORE must be maildir or s3, not %q" $store) -}}
{{- end -}}
{{- if and (eq .Values.mode "cluster") (ne $store "s3") -}}
{{- fail "postern: mode cluster needs config.STORE=s3 (gateways and delivery workers share one bucket; a Maildir is local to one pod)" -}}
{{- end -}}
{{- $redisUrl := not (empty (or (and (hasKey $c "REDIS_URL") (ne (toString $c.REDIS_URL) "")) (and .Values.secrets.redis.existingSecret .Values.secrets.redis.urlKey))) -}}
{{- if and (hasKey $c "REDIS_URL") .Values.secrets.redis.urlKey -}}
{{- fail "postern: REDIS_URL is given twice: in config.REDIS_URL and in secrets.redis.urlKey; keep one" -}}
{{- end -}}
{{- $sentinels := ne (include "postern.configValue" (default "" $c.REDIS_SENTINELS)) "" -}}
{{- $clusterNodes := ne (include "postern.configValue" (default "" $c.REDIS_CLUSTER_NODES)) "" -}}
{{- $redisModes := len (without (list $redisUrl $sentinels $clusterNodes) false) -}}
{{- if gt $redisModes 1 -}}
{{- fail "postern: config.REDIS_URL: set only one of REDIS_URL, REDIS_SENTINELS, REDIS_CLUSTER_NODES" -}}
{{- end -}}
{{- if and $sentinels (not $c.REDIS_SENTINEL_MASTER) -}}
{{- fail "postern: config.REDIS_SENTINEL_MASTER: required with REDIS_SENTINELS (the monitored master name)" -}}
{{- end -}}
{{- if eq $store "s3" -}}
{{- if not $c.S3_BUCKET -}}
{{- fail "postern: config.S3_BUCKET: required when STORE=s3 (cluster mode): the bucket messages are stored in" -}}
{{- end -}}
{{- if eq $redisModes 0 -}}
{{- fail "postern: config.REDIS_URL: STORE=s3 needs Redis: set config.REDIS_URL (or secrets.redis.urlKey), config.REDIS_SENTINELS or config.REDIS_CLUSTER_NODES" -}}
{{- end -}}
{{- end -}}
{{- if and (eq .Values.mode "cluster") (has "passwd-file" (splitList "," (include "postern.auth" .))) (not .Values.passwdFile.existingSecret) -}}
{{- fail "postern: config.AUTH includes passwd-file (the default): in cluster mode every pod needs the same file, so set passwdFile.existingSecret (or set config.AUTH to ldap)" -}}
{{- end -}}
{{- if .Values.secrets.redis.passwordKey | and (not .Values.secrets.redis.existingSecret) -}}
{{- fail "postern: secrets.redis.passwordKey needs secrets.redis.existingSecret" -}}
{{- end -}}
{{- if not (kindIs "invalid" .Values.terminationGracePeriodSeconds) -}}
{{- $floor := add (int64 (include "postern.drainSeconds" .)) (int64 .Values.preStopSleepSeconds) -}}
{{- if le (int64 .Values.terminationGracePeriodSeconds) $floor -}}
{{- fail (printf "postern: terminationGracePeriodSeconds (%d) must exceed DRAIN_TIMEOUT_MS in seconds plus preStopSleepSeconds (%d), or open sessions are killed before they drain" (int64 .Values.terminationGracePeriodSeconds) $floor) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Listen addresses for a role: gateway, delivery or single. */}}
{{- define "postern.listenEnv" -}}
{{- $p := .root.Values.ports -}}
- name: POP3_LISTEN
  value: {{ if eq .role "delivery" }}"off"{{ else }}{{ printf "0.0.0.0:%d" (int $p.pop3) | quote }}{{ end }}
- name: POP3S_LISTEN
  value: {{ if eq .role "delivery" }}"off"{{ else }}{{ printf "0.0.0.0:%d" (int $p.pop3s) | quote }}{{ end }}
- name: LMTP_LISTEN
  value: {{ if eq .role "gateway" }}"off"{{ else }}{{ printf "0.0.0.0:%d" (int $p.lmtp) | quote }}{{ end }}
- name: SMTP_LISTEN
  value: {{ if and (eq .role "delivery") .root.Values.delivery.smtp }}{{ printf "0.0.0.0:%d" (int $p.smtp) | quote }}{{ else }}"off"{{ end }}
- name: ADMIN_LISTEN
  value: {{ printf "0.0.0.0:%d" (int $p.admin) | quote }}
{{- end -}}

{{- define "postern.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret | quote }}
      key: {{ .key | quote }}
{{- end -}}

{{/* The container environment: listen addresses, paths, config, then secrets by reference. */}}
{{- define "postern.env" -}}
{{- $v := .root.Values -}}
{{ include "postern.listenEnv" . }}
- name: DATA_DIR
  value: /var/lib/postern
{{- if $v.tls.existingSecret }}
- name: TLS_CERT
  value: {{ printf "/etc/postern/tls/%s" $v.tls.certKey | quote }}
- name: TLS_KEY
  value: {{ printf "/etc/postern/tls/%s" $v.tls.keyKey | quote }}
{{- end }}
{{- if $v.passwdFile.existingSecret }}
- name: PASSWD_FILE
  value: {{ printf "/etc/postern/passwd/%s" $v.passwdFile.key | quote }}
{{- end }}
{{- if not (hasKey $v.config "STORE") }}
- name: STORE
  value: {{ include "postern.store" .root | quote }}
{{- end }}
{{- range $k, $val := $v.config }}
- name: {{ $k }}
  value: {{ include "postern.configValue" $val | quote }}
{{- end }}
{{- with $v.secrets.s3 }}{{ if .existingSecret }}
{{ include "postern.secretEnv" (dict "name" "AWS_ACCESS_KEY_ID" "secret" .existingSecret "key" .accessKeyIdKey) }}
{{ include "postern.secretEnv" (dict "name" "AWS_SECRET_ACCESS_KEY" "secret" .existingSecret "key" .secretAccessKeyKey) }}
{{- end }}{{ end }}
{{- with $v.secrets.redis }}{{ if .existingSecret }}
{{- if .passwordKey }}
{{ include "postern.secretEnv" (dict "name" "REDIS_PASSWORD" "secret" .existingSecret "key" .passwordKey) }}
{{- end }}
{{- if .urlKey }}
{{ include "postern.secretEnv" (dict "name" "REDIS_URL" "secret" .existingSecret "key" .urlKey) }}
{{- end }}
{{- end }}{{ end }}
{{- with $v.secrets.ldap }}{{ if .existingSecret }}
{{ include "postern.secretEnv" (dict "name" "LDAP_BIND_PASSWORD" "secret" .existingSecret "key" .bindPasswordKey) }}
{{- end }}{{ end }}
{{- with $v.secrets.credentialCache }}{{ if .existingSecret }}
{{ include "postern.secretEnv" (dict "name" "CREDENTIAL_CACHE_SECRET" "secret" .existingSecret "key" .key) }}
{{- end }}{{ end }}
{{- end -}}

{{/*
The pod template shared by the three Deployments. Arguments: root, role (gateway, delivery,
single), args (the main.js mode argument, empty for the single node), component values.
*/}}
{{- define "postern.podTemplate" -}}
{{- $v := .root.Values -}}
{{- $p := $v.ports -}}
metadata:
  labels:
    {{- include "postern.selectorLabels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .role }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $v.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  # SIGTERM drains (DRAIN_TIMEOUT_MS); this must outlast the preStop sleep plus the drain.
  terminationGracePeriodSeconds: {{ include "postern.terminationGracePeriodSeconds" .root }}
  enableServiceLinks: false
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  {{- if .component.affinity }}
  affinity:
    {{- toYaml .component.affinity | nindent 4 }}
  {{- else if ne .role "single" }}
  affinity:
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels:
                {{- include "postern.selectorLabels" .root | nindent 16 }}
                app.kubernetes.io/component: {{ .role }}
  {{- end }}
  {{- with .component.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ .role }}
      image: {{ printf "%s:%s" $v.image.repository (toString $v.image.tag) | quote }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      workingDir: /app
      command: ["node", "services/server/dist/main.js"]
      {{- if .args }}
      args: [{{ .args | quote }}]
      {{- end }}
      env:
        {{- include "postern.env" (dict "root" .root "role" .role) | nindent 8 }}
      ports:
        {{- if ne .role "delivery" }}
        - { name: pop3, containerPort: {{ $p.pop3 }}, protocol: TCP }
        - { name: pop3s, containerPort: {{ $p.pop3s }}, protocol: TCP }
        {{- end }}
        {{- if ne .role "gateway" }}
        - { name: lmtp, containerPort: {{ $p.lmtp }}, protocol: TCP }
        {{- end }}
        {{- if and (eq .role "delivery") $v.delivery.smtp }}
        - { name: smtp, containerPort: {{ $p.smtp }}, protocol: TCP }
        {{- end }}
        - { name: admin, containerPort: {{ $p.admin }}, protocol: TCP }
      livenessProbe:
        httpGet: { path: /healthz, port: admin }
        {{- toYaml $v.probes.liveness | nindent 8 }}
      readinessProbe:
        httpGet: { path: /readyz, port: admin }
        {{- toYaml $v.probes.readiness | nindent 8 }}
      {{- if gt (int $v.preStopSleepSeconds) 0 }}
      lifecycle:
        preStop:
          exec:
            command: ["sleep", {{ $v.preStopSleepSeconds | toString | quote }}]
      {{- end }}
      resources:
        {{- toYaml .component.resources | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      volumeMounts:
        - { name: data, mountPath: /var/lib/postern }
        - { name: tmp, mountPath: /tmp }
        {{- if $v.tls.existingSecret }}
        - { name: tls, mountPath: /etc/postern/tls, readOnly: true }
        {{- end }}
        {{- if $v.passwdFile.existingSecret }}
        - { name: passwd, mountPath: /etc/postern/passwd, readOnly: true }
        {{- end }}
  volumes:
    {{- if eq .role "single" }}
    - name: data
      {{- if $v.single.persistence.enabled }}
      persistentVolumeClaim:
        claimName: {{ $v.single.persistence.existingClaim | default (printf "%s-data" (include "postern.fullname" .root)) }}
      {{- else }}
      emptyDir: {}
      {{- end }}
    {{- else }}
    - name: data
      emptyDir:
        sizeLimit: {{ .component.dataSizeLimit }}
    {{- end }}
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    {{- if $v.tls.existingSecret }}
    - name: tls
      secret:
        secretName: {{ $v.tls.existingSecret }}
        defaultMode: 0440
    {{- end }}
    {{- if $v.passwdFile.existingSecret }}
    - name: passwd
      secret:
        secretName: {{ $v.passwdFile.existingSecret }}
        defaultMode: 0440
    {{- end }}
{{- end -}}
