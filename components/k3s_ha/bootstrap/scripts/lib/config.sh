# shellcheck shell=bash
# lib.sh part: config.yaml: reading it from stdin, its values, edits and saving it.

# Usage: k3s_ha_write_config PATH  (content on stdin)
# Replaces PATH atomically with mode 0600, because k3s may read config.yaml at any moment
# and the file holds the cluster token. Sets _k3s_ha_config_changed to 1 when the content
# differs from what was there before, 0 otherwise, so callers restart only when needed.
# The content is read into memory first, so the temporary file (same directory, so that
# the final mv is a rename; umask 077) exists only for a few builtins and is removed on
# any exit or signal; one that a SIGKILL left behind is removed by the next run.
k3s_ha_write_config() {
  local path=$1 dir name tmp content stale setting=$'\n''[[:space:]]*[^#[:space:]]'
  dir=$(dirname -- "$path")
  name=$(basename -- "$path")
  content=""
  if IFS= read -r -d '' content; then
    k3s_ha_die "the content for $path contains a NUL byte"
  fi
  # An empty file would make k3s start with defaults, e.g. a fresh single-node cluster
  # instead of a join, which is far worse than failing here.
  # A regex, not grep: a here-string may go through a file in TMPDIR, and this is a token.
  if [[ ! $'\n'$content =~ $setting ]]; then
    k3s_ha_die "refusing to write an empty $path: its content must arrive on stdin"
  fi
  if [[ ! -d $dir ]]; then
    (umask 022 && mkdir -p -- "$dir") || k3s_ha_die "could not create $dir"
  fi
  for stale in "$dir/.$name".*; do
    if [[ -f $stale ]]; then
      rm -f -- "$stale" && k3s_ha_log "removed $stale, left by an earlier run that was killed"
    fi
  done
  tmp=$(umask 077 && mktemp "$dir/.$name.XXXXXX") \
    || k3s_ha_die "could not create a temporary file in $dir"
  k3s_ha_at_exit rm -f -- "$tmp"
  if ! (umask 077 && printf '%s' "$content" >"$tmp"); then
    k3s_ha_die "could not write $path"
  fi
  chmod 600 -- "$tmp" || k3s_ha_die "could not set mode 0600 on a temporary file in $dir"
  # sha256sum rather than cmp: coreutils is on every node, diffutils is not.
  if [[ -f $path && $(sha256sum <"$tmp") == "$(sha256sum <"$path")" ]]; then
    _k3s_ha_config_changed=0
  else
    _k3s_ha_config_changed=1
  fi
  # Replace even when unchanged: this also repairs a too-open mode on the old file.
  mv -f -- "$tmp" "$path" || k3s_ha_die "could not replace $path"
  if [[ $_k3s_ha_config_changed == 1 ]]; then
    k3s_ha_log "wrote $path (changed)"
  else
    k3s_ha_log "$path is unchanged"
  fi
}

# --- config.yaml edits ---------------------------------------------------------------
# The config text lives in _k3s_ha_config, in memory: it holds the token, so it is only
# ever passed to bash functions and builtins, never to a command line or an output.

# The last line of every config.yaml Python sends (node_config.END_MARKER). A YAML
# comment, so it stays in the file harmlessly.
k3s_ha_config_end_marker() {
  printf '%s\n' '# k3s-ha: end of config.yaml'
}

# Loads config.yaml from stdin into _k3s_ha_config, byte for byte. Refuses stdin whose last
# line is not the end marker: a dropped SSH session or a killed sender can cut stdin short
# anywhere, and a config cut after `token:` but before `server:` would start a new cluster.
k3s_ha_config_from_stdin() {
  local end
  _k3s_ha_config=""
  if IFS= read -r -d '' _k3s_ha_config; then
    k3s_ha_die "the config.yaml on stdin contains a NUL byte"
  fi
  end=$(k3s_ha_config_end_marker)
  if [[ $'\n'$_k3s_ha_config != *$'\n'"$end"$'\n' ]]; then
    if [[ -z ${_k3s_ha_config//[[:space:]]/} ]]; then
      k3s_ha_die "refusing to write an empty config.yaml: its content must arrive on stdin"
    fi
    k3s_ha_die "the config.yaml on stdin does not end with the line '$end': it was cut short (or not sent by k3s-ha); nothing was written or restarted"
  fi
}

# Usage: k3s_ha_config_split_part SEPARATOR REQUIRED MESSAGE
# After k3s_ha_config_from_stdin: moves what follows the line SEPARATOR (a later document on the
# start step's stdin: registries.yaml, the manifests) out of _k3s_ha_config into _k3s_ha_part
# and sets _k3s_ha_has_part to 1, or to 0 when stdin had none. REQUIRED=1 (a start step's
# parameter) says stdin must carry it: every document ends with the same end marker, so a stdin
# cut before it would otherwise read as "none" and remove the file; then it dies with MESSAGE.
k3s_ha_config_split_part() {
  local separator=$'\n'"$1"$'\n'
  _k3s_ha_part=""
  _k3s_ha_has_part=0
  if [[ $_k3s_ha_config == *"$separator"* ]]; then
    _k3s_ha_part=${_k3s_ha_config#*"$separator"}
    _k3s_ha_config=${_k3s_ha_config%%"$separator"*}$'\n'
    _k3s_ha_has_part=1
  elif [[ $2 == 1 ]]; then
    k3s_ha_die "$3"
  fi
}

# Usage: k3s_ha_config_from_file FILE
# Loads FILE into _k3s_ha_config, byte for byte.
k3s_ha_config_from_file() {
  _k3s_ha_config=""
  [[ -r $1 ]] || k3s_ha_die "cannot read $1"
  if IFS= read -r -d '' _k3s_ha_config <"$1"; then
    k3s_ha_die "$1 contains a NUL byte; it cannot be a config.yaml"
  fi
}

# Usage: k3s_ha_config_save PATH
# Writes _k3s_ha_config to PATH like k3s_ha_write_config (atomic, 0600, sets
# _k3s_ha_config_changed, refuses empty content). A config that differs from the old one only
# in its tokens' form (the K10<CA hash>:: prefix added, or a new hash for the same password)
# counts as unchanged: K3s reads the token only when it starts (to join, or an agent to fetch
# its certificates), so a running node has nothing to learn from it and is not restarted;
# its next start uses the new form.
k3s_ha_config_save() {
  local old=""
  if [[ -f $1 ]]; then
    IFS= read -r -d '' old <"$1" || true
  fi
  k3s_ha_write_config "$1" < <(printf '%s' "$_k3s_ha_config")
  if [[ $_k3s_ha_config_changed == 1 && -n $old ]] \
    && [[ $(k3s_ha_config_token_passwords "$old") == "$(k3s_ha_config_token_passwords "$_k3s_ha_config")" ]]; then
    _k3s_ha_config_changed=0
    k3s_ha_log "only the form of $1's tokens changed (the cluster CA's hash): K3s reads them at its next start, so nothing is restarted for it"
  fi
}

# Usage: k3s_ha_config_token_passwords TEXT
# Prints TEXT with every top-level token and agent-token value reduced to its password.
# Only for comparisons inside a command substitution: the output holds the tokens.
k3s_ha_config_token_passwords() {
  local line value lines=()
  mapfile -t lines < <(printf '%s' "$1")
  for line in "${lines[@]}"; do
    if [[ $line =~ ^(token|agent-token):[[:space:]]*(.*)$ ]]; then
      value=${BASH_REMATCH[2]}
      if [[ $value =~ ^\"([^\"]*)\" || $value =~ ^\'([^\']*)\' ]]; then
        value=${BASH_REMATCH[1]}
      fi
      line="${line%%:*}: $(k3s_ha_token_password "$value")"
    fi
    printf '%s\n' "$line"
  done
}

# Usage: k3s_ha_config_value KEY
# Prints the value of top-level scalar KEY (quotes and a trailing comment removed); fails
# when the key is absent. Never use it on a secret outside a variable assignment.
k3s_ha_config_value() {
  local pattern="^$1:([[:space:]]+(.*))?\$" line value lines=()
  mapfile -t lines < <(printf '%s' "${_k3s_ha_config:-}")
  for line in "${lines[@]}"; do
    line=${line%$'\r'}
    if [[ $line =~ $pattern ]]; then
      value=${BASH_REMATCH[2]}
      if [[ $value =~ ^\"([^\"]*)\" || $value =~ ^\'([^\']*)\' ]]; then
        value=${BASH_REMATCH[1]}
      else
        value=${value%%[[:space:]]#*}
        value=${value%"${value##*[![:space:]]}"}
      fi
      printf '%s\n' "$value"
      return 0
    fi
  done
  return 1
}

# Usage: k3s_ha_config_is_true KEY
# Succeeds when config.yaml sets top-level KEY to true.
k3s_ha_config_is_true() {
  local value
  value=$(k3s_ha_config_value "$1") || return 1
  [[ $value == true || $value == True || $value == TRUE ]]
}

# Prints the config's `server:` URL (https://ADDR:6443) without a trailing slash, or
# nothing when there is none. Fails when it is not an https URL.
k3s_ha_config_server_url() {
  local url
  url=$(k3s_ha_config_value server) || return 0
  if [[ ! $url =~ ^https://[^[:space:]/]+/?$ ]]; then
    k3s_ha_die "config.yaml has server: '$url', expected https://ADDRESS:6443"
  fi
  printf '%s\n' "${url%/}"
}

# Usage: k3s_ha_config_join URL
# Turns _k3s_ha_config into one that joins URL: its cluster-init and server lines give way
# to one `server: URL` where the first of them was; every other line (token included)
# stays as it was.
k3s_ha_config_join() {
  k3s_ha_config_replace_keys "server: $1" cluster-init server
}

# Usage: k3s_ha_config_replace_keys NEW_LINE KEY...
# Removes every top-level line of _k3s_ha_config that sets one of KEYs (quoted keys too:
# other tools write "server":) and puts NEW_LINE (if not empty) where the first of them
# was, or at the end, before the end marker line if there is one.
k3s_ha_config_replace_keys() {
  local new=$1 line key text="" placed=0 matched end lines=()
  shift
  end=$(k3s_ha_config_end_marker)
  mapfile -t lines < <(printf '%s' "$_k3s_ha_config")
  for line in "${lines[@]}"; do
    matched=0
    for key in "$@"; do
      if [[ $line =~ ^[\"\']?${key}[\"\']?: ]]; then
        matched=1
      fi
    done
    if ((matched == 0)); then
      if [[ $line == "$end" && $placed == 0 && -n $new ]]; then
        text+="$new"$'\n'
        placed=1
      fi
      text+="$line"$'\n'
      continue
    fi
    if ((placed == 0)) && [[ -n $new ]]; then
      text+="$new"$'\n'
    fi
    placed=1
  done
  if ((placed == 0)) && [[ -n $new ]]; then
    text+="$new"$'\n'
  fi
  _k3s_ha_config=$text
}

# --- tokens --------------------------------------------------------------------------

# Usage: k3s_ha_token_password TOKEN
# Prints the password part of a K3s token: TOKEN itself in the short form, the part after
# "K10<ca hash>::server:" (or ::node:) in the secure form K3s writes to server/token and
# server/agent-token (k3s-io/k3s pkg/server/server.go writeToken, clientaccess.FormatToken).
# Only for command substitutions into variables: never echo it anywhere else.
k3s_ha_token_password() {
  local token=$1
  if [[ $token =~ ^K10[0-9a-fA-F]*::(.*)$ ]]; then
    token=${BASH_REMATCH[1]}
    token=${token#server:}
    token=${token#node:}
  fi
  printf '%s\n' "$token"
}

# Prints the cluster CA's hash this server holds: the 64 hex digits of the K10<hash>:: prefix
# K3s writes to DATA_DIR/server/token (pkg/server/server.go writeToken; the SHA-256 of
# server-ca.crt, pkg/clientaccess/token.go hashCA). Fails when there is none yet. The file
# holds the token: only the hash leaves this function.
k3s_ha_cluster_ca_hash() {
  local file stored=""
  file=$(k3s_ha_data_dir)/server/token
  [[ -s $file ]] || return 1
  IFS= read -r stored <"$file" || true
  if [[ $stored =~ ^K10([0-9a-f]{64}):: ]]; then
    printf '%s\n' "${BASH_REMATCH[1]}"
    return 0
  fi
  return 1
}

# Usage: k3s_ha_config_secure_token HASH
# Rewrites _k3s_ha_config's `token:` to the secure form K10<HASH>::server:<password>, with
# which K3s refuses a server that presents another cluster CA before it sends the token
# (pkg/clientaccess/token.go ParseAndValidateToken).
k3s_ha_config_secure_token() {
  local token
  token=$(k3s_ha_config_value token) || k3s_ha_die "the config.yaml on stdin has no token"
  k3s_ha_config_replace_keys "token: K10$1::server:$(k3s_ha_token_password "$token")" token
}

# Usage: k3s_ha_refuse_token_change
# On a server that already holds cluster data, refuses (before anything is written or
# restarted) a config.yaml whose token or agent-token differs from the one K3s stored
# when the cluster was built (DATA_DIR/server/token, server/agent-token): K3s would not
# start ("bootstrap data already found and encrypted with different token"). The same
# value pinned again passes.
k3s_ha_refuse_token_change() {
  local key file stored wanted server_dir name
  server_dir=$(k3s_ha_data_dir)/server
  for key in token agent-token; do
    file=$server_dir/$key
    [[ -s $file ]] || continue
    wanted=$(k3s_ha_config_value "$key") || continue
    [[ -n $wanted ]] || continue
    IFS= read -r stored <"$file" || true
    if [[ $(k3s_ha_token_password "$stored") == "$(k3s_ha_token_password "$wanted")" ]]; then
      continue
    fi
    name=token
    if [[ $key == agent-token ]]; then
      name="agentToken (agent_token)"
    fi
    k3s_ha_die "refusing to change the cluster's $key: the new config.yaml's $key differs from the one this cluster was built with ($file), and K3s would refuse to start with it (bootstrap data encrypted with a different token). Nothing was changed. Set $name back to its current value, or rotate it first: on one server run 'k3s token rotate' (K3s v1.28.2, v1.27.7, v1.26.10, v1.25.15 or newer; see the K3s docs, cli/token), restart the servers one at a time, then the agents, and only then set the new value here"
  done
}
