#!/usr/bin/env bash
# Installs what this machine runs of Outpost: the binary in /usr/local/bin, and for each --role its system user,
# its directories (owner and mode) and its systemd units in /etc/systemd/system (not enabled: the script prints
# the one-time steps that follow). Run as root; running it again changes nothing but the binary and the units.
#   bash Deploy/install.sh --binary .build/release/outpost --role relay --role vault
# Roles:
#   relay  user outpost, /var/lib/outpost (0750) and its data directory /var/lib/outpost/relay (0700);
#          outpost-relay.service and outpost-relay-maintenance (service + timer)
#   vault  user outpost-vault, /var/lib/outpost-vault (0750) and its data directory /var/lib/outpost-vault/vault
#          (0700); outpost-vault.service
#   agent  user outpost-agent, /var/lib/outpost-agent (0700, the unit's StateDirectory), /etc/outpost (0755);
#          outpost-agent.service, and the units of local and pushed backups (outpost-backup@, outpost-push@,
#          outpost-store-maintenance)
# Without --binary, /usr/local/bin/outpost must already be there (Deploy/setup.sh builds it and passes it on).
# --check only checks the arguments and that it runs as root, and changes nothing.
# Exit 0: installed. Exit 64: bad arguments. Exit 77: not run as root. Anything else: a step failed (named).
set -euo pipefail

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

roles=()
binary=""
check=false
while [ $# -gt 0 ]; do
  case "$1" in
    --role)
      [ $# -ge 2 ] || { echo "install.sh: --role needs relay, vault or agent" >&2; exit 64; }
      case "$2" in
        relay | vault | agent) roles+=("$2") ;;
        *) echo "install.sh: unknown role '$2': say relay, vault or agent (repeat --role for several)" >&2; exit 64 ;;
      esac
      shift 2 ;;
    --role=*)
      set -- --role "${1#--role=}" "${@:2}" ;;
    --binary)
      [ $# -ge 2 ] || { echo "install.sh: --binary needs the path of an outpost binary" >&2; exit 64; }
      binary="$2"; shift 2 ;;
    --check) check=true; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument '$1' (see --help)" >&2; exit 64 ;;
  esac
done
if [ ${#roles[@]} -eq 0 ]; then
  echo "install.sh: say what this machine runs: --role relay, --role vault and/or --role agent (see --help)" >&2
  exit 64
fi
if [ -n "$binary" ] && [ ! -x "$binary" ]; then
  echo "install.sh: --binary $binary is not an executable file; build it first (swift build -c release --product outpost)" >&2
  exit 64
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run it as root: it creates system users and writes /usr/local/bin and /etc/systemd/system (sudo bash $0 ...)" >&2
  exit 77
fi
[ -z "$binary" ] || binary="$(realpath "$binary")"
! $check || exit 0
cd "$(dirname "$0")/.."
trap 'echo "install.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

has_role() {
  local r
  for r in "${roles[@]}"; do [ "$r" = "$1" ] && return 0; done
  return 1
}

# A system user with its own group and no login; left as it is when it exists.
ensure_user() {
  local name="$1" home="$2"
  if id -u "$name" >/dev/null 2>&1; then
    echo "user $name exists"
  else
    useradd --system --user-group --home-dir "$home" --no-create-home --shell /usr/sbin/nologin "$name"
    echo "created user $name"
  fi
}

# A directory with exactly this owner and mode (not recursive: what `init` made inside keeps its own modes).
ensure_dir() {
  local mode="$1" owner="$2" dir="$3" group
  group="$(id -gn "$owner")"
  install -d -m "$mode" -o "$owner" -g "$group" "$dir"
  chmod "$mode" "$dir"
  chown "$owner:$group" "$dir"
}

if [ -n "$binary" ]; then
  install -m 0755 "$binary" /usr/local/bin/outpost.new
  mv -f /usr/local/bin/outpost.new /usr/local/bin/outpost
  echo "installed /usr/local/bin/outpost ($(/usr/local/bin/outpost --version))"
elif [ ! -x /usr/local/bin/outpost ]; then
  echo "install.sh: /usr/local/bin/outpost is missing: give --binary PATH (or run Deploy/setup.sh, which builds it)" >&2
  exit 1
fi

units=()
next=()
if has_role relay; then
  ensure_user outpost /var/lib/outpost
  ensure_dir 0750 outpost /var/lib/outpost
  ensure_dir 0700 outpost /var/lib/outpost/relay
  units+=(outpost-relay.service outpost-relay-maintenance.service outpost-relay-maintenance.timer)
  [ -f /var/lib/outpost/relay/relay.toml ] ||
    next+=("runuser -u outpost -- outpost relay init --data /var/lib/outpost/relay --hostname $(hostname -f 2>/dev/null || hostname)")
  next+=("edit /var/lib/outpost/relay/relay.toml (listen = \"0.0.0.0:8440\"), then: systemctl enable --now outpost-relay outpost-relay-maintenance.timer")
fi
if has_role vault; then
  ensure_user outpost-vault /var/lib/outpost-vault
  ensure_dir 0750 outpost-vault /var/lib/outpost-vault
  ensure_dir 0700 outpost-vault /var/lib/outpost-vault/vault
  units+=(outpost-vault.service)
  [ -f /var/lib/outpost-vault/vault/vault.json ] ||
    next+=("runuser -u outpost-vault -- outpost vault init --data /var/lib/outpost-vault/vault --name NAME --url https://$(hostname -f 2>/dev/null || hostname):8441")
  next+=("edit /var/lib/outpost-vault/vault/vault.toml (listen = \"0.0.0.0:8441\"), then: systemctl enable --now outpost-vault")
fi
if has_role agent; then
  ensure_user outpost-agent /var/lib/outpost-agent
  ensure_dir 0700 outpost-agent /var/lib/outpost-agent
  # Shared with the other roles (an operator certificate, secrets, client.toml): root's, readable; each file in it
  # carries its own owner and mode (client.toml: outpost-agent, 0600). Left as it is when it exists.
  [ -d /etc/outpost ] || install -d -m 0755 /etc/outpost
  units+=(outpost-agent.service outpost-push@.service outpost-push@.timer outpost-backup@.service outpost-backup@.timer
    outpost-store-maintenance.service outpost-store-maintenance.timer)
  if [ ! -f /etc/outpost/client.toml ]; then
    next+=("outpost enroll --relay https://RELAY:8440 --token-file TOKENFILE --fingerprint FP --config /etc/outpost/client.toml")
    next+=("chown outpost-agent: /etc/outpost/client.toml")
  fi
  next+=("on the relay, put this machine in a protection group (outpost relay group create|edit), then: systemctl enable --now outpost-agent")
fi

for unit in "${units[@]}"; do
  install -m 0644 "Deploy/$unit" "/etc/systemd/system/$unit"
done
echo "installed in /etc/systemd/system: ${units[*]}"
# Only where systemd runs (not in a container build or a chroot).
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then systemctl daemon-reload; fi

echo "next steps (as root; each unit's header says more, Deploy/README.md covers certificates, firewalls, upgrades):"
for step in "${next[@]}"; do echo "  $step"; done
