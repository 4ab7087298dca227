#!/usr/bin/env bash
# Install (or upgrade, or remove) a village service station on Raspberry Pi OS Bookworm or Debian 12, as root:
#
#   sudo ./install.sh --wheel station_kit-0.1.0-py3-none-any.whl --server https://sync.bank.example
#
# What it sets up (docs/operations.md, "Installing a station"):
#   - from Debian: Chromium, cage (the kiosk's compositor), a Chinese font, espeak-ng with its Mandarin voice, the
#     venv module, libusb (USB receipt printers) and the kiosk's login session (libpam-systemd);
#   - the system users `station` (runs the station, owns the data folder) and `station-kiosk` (runs the browser;
#     it cannot read the station's keys);
#   - the kit in a venv: /opt/station-kit/venv (`station-kit[station]`, from a wheel or a package index);
#   - the data folder (default /var/lib/station, mode 0700, owned by station), never removed;
#   - /etc/station-kit/station.env (STATION_DATA_DIR, and STATION_SERVER_URL, the bank's sync server the
#     enrollment screen offers, so the technician only scans or types the enrollment code);
#   - station.service and station-kiosk.service (from systemd/ beside this script), enabled, and the daily
#     backup (station-backup.service, started by station-backup.timer, enabled).
# No input method from the OS: the UI has its own on-screen keyboard, and a USB QR scanner types like a keyboard.
#
# Idempotent: a second run with the same options changes nothing. Run it again with a newer wheel to upgrade
# (the running station restarts). --uninstall removes the units, the venv and the settings and keeps the data.
set -euo pipefail
# Only the venv's own packages count: not a PYTHONPATH or user site of whoever runs this.
unset PYTHONPATH PYTHONHOME PYTHONUSERBASE
export PYTHONNOUSERSITE=1

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PREFIX=/opt/station-kit
VENV=$PREFIX/venv
BROWSER_LINK=$PREFIX/bin/kiosk-browser
STAMP=$PREFIX/installed-from
CONF_DIR=/etc/station-kit
ENV_FILE=$CONF_DIR/station.env
UNIT_DIR=/etc/systemd/system
DROP_IN=$UNIT_DIR/station.service.d/data-dir.conf
PAM_FILE=/etc/pam.d/station-kiosk
DEFAULT_DATA_DIR=/var/lib/station
STATION_USER=station
KIOSK_USER=station-kiosk
KIOSK_HOME=/var/lib/station-kiosk
KIOSK_CACHE=/var/cache/station-kiosk
UNITS=(station.service station-kiosk.service station-backup.service station-backup.timer)
# What starts on boot: the station, its kiosk, and the daily backup (its timer starts station-backup.service).
ENABLED_UNITS=(station.service station-kiosk.service station-backup.timer)
DISTRIBUTION=station-kit
EXTRAS=station

usage() {
    cat <<'EOF'
Usage: install.sh [OPTIONS]          install or upgrade the station (as root)
       install.sh --uninstall        remove it, keeping the data folder

Where the kit comes from (default: `station-kit` from PyPI):
  --wheel FILE        a station_kit-*.whl built from the repository (`pip wheel --no-deps -w dist .`)
  --index-url URL     a package index (the bank's mirror); with --wheel, where its dependencies come from
  --wheelhouse DIR    no network: take every package from the wheels in DIR (pip --no-index --find-links DIR)

Settings (kept from the previous run when not given again):
  --server URL        the bank's sync server the enrollment screen offers, e.g. https://sync.bank.example
  --data-dir DIR      the station's data folder (default /var/lib/station)

Other:
  --skip-apt          do not install Debian packages (they must be there already)
  --python FILE       the Python (>= 3.11) that builds the venv (default /usr/bin/python3)
  --root DIR          install into DIR instead of / (tests; implies --skip-apt; nothing is started)
  --uninstall         disable and remove the units, the venv and /etc/station-kit; keep the data folder
  -h, --help          this help

Example: sudo ./install.sh --wheel station_kit-0.1.0-py3-none-any.whl --server https://sync.bank.example
EOF
}

say() { printf '==> %s\n' "$*"; }
changed=0
did() { printf '    %s\n' "$*"; changed=1; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
usage_error() { printf 'install.sh: %s (see --help)\n' "$*" >&2; exit 2; }

root=/
wheel=
index_url=
wheelhouse=
server=
data_dir=
skip_apt=0
do_uninstall=0
python=/usr/bin/python3

while [ $# -gt 0 ]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --skip-apt) skip_apt=1; shift; continue ;;
        --uninstall) do_uninstall=1; shift; continue ;;
        --wheel | --index-url | --wheelhouse | --server | --data-dir | --python | --root)
            if [ $# -lt 2 ] || [ -z "$2" ]; then usage_error "$1 needs a value"; fi ;;
        *) usage_error "unknown option: $1" ;;
    esac
    case "$1" in
        --wheel) wheel=$2 ;;
        --index-url) index_url=$2 ;;
        --wheelhouse) wheelhouse=$2 ;;
        --server) server=$2 ;;
        --data-dir) data_dir=$2 ;;
        --python) python=$2 ;;
        --root) root=$2 ;;
    esac
    shift 2
done

[ "$(id -u)" -eq 0 ] || die "run it as root: sudo $0 ..."
[ -d "$root" ] || usage_error "--root $root is not a directory"
root=$(cd "$root" && pwd)
R=${root%/}    # prefix of every path written; empty for the real root
live=0         # 1 when installing on the running system under systemd: reload and restart units
if [ -z "$R" ]; then
    [ -d /run/systemd/system ] && live=1
else
    skip_apt=1
    [ -f "$R/etc/passwd" ] || die "--root $root has no etc/passwd, etc/group, etc/shadow, etc/gshadow (copy them first)"
fi
systemctl_root=()
[ -z "$R" ] || systemctl_root=(--root="$root")
prefix_opt=()  # useradd and usermod
[ -z "$R" ] || prefix_opt=(--prefix "$root")

user_field() { awk -F: -v user="$1" -v field="$2" '$1 == user { print $field }' "$R/etc/passwd"; }
group_exists() { grep -q "^$1:" "$R/etc/group"; }
in_group() {
    awk -F: -v group="$1" -v user="$2" '
        $1 == group { n = split($4, members, ","); for (i = 1; i <= n; i++) if (members[i] == user) found = 1 }
        END { exit !found }' "$R/etc/group"
}

# Values a previous run wrote to the environment file.
env_value() {
    [ -f "$R$ENV_FILE" ] || return 0
    sed -n "s/^$1=//p" "$R$ENV_FILE" | tail -n 1
}

uninstall() {
    local data
    data=$(env_value STATION_DATA_DIR)
    say "Removing the station (the data folder ${data:-$DEFAULT_DATA_DIR} is kept)"
    local unit
    for unit in "${ENABLED_UNITS[@]}"; do
        if [ "$live" -eq 1 ] && systemctl is-active --quiet "$unit"; then
            systemctl stop "$unit"
            did "stopped $unit"
        fi
        if [ -f "$R$UNIT_DIR/$unit" ] && systemctl "${systemctl_root[@]}" is-enabled --quiet "$unit" 2>/dev/null; then
            systemctl "${systemctl_root[@]}" disable --quiet "$unit"
            did "disabled $unit"
        fi
    done
    local path
    for path in "$UNIT_DIR/station.service" "$UNIT_DIR/station-kiosk.service" "$UNIT_DIR/station.service.d" \
        "$UNIT_DIR/station-backup.service" "$UNIT_DIR/station-backup.timer" \
        "$PAM_FILE" "$CONF_DIR" "$PREFIX" "$KIOSK_HOME" "$KIOSK_CACHE"; do
        if [ -e "$R$path" ] || [ -L "$R$path" ]; then
            rm -rf -- "$R$path"
            did "removed $path"
        fi
    done
    [ "$live" -eq 0 ] || [ "$changed" -eq 0 ] || systemctl daemon-reload
    if [ "$changed" -eq 0 ]; then
        say "Nothing to remove."
    fi
    say "Kept: the data folder ${data:-$DEFAULT_DATA_DIR} (the journal and keys: back it up or hand it to the bank)" \
        "and the users $STATION_USER and $KIOSK_USER."
}

if [ "$do_uninstall" -eq 1 ]; then
    [ -z "$wheel$index_url$wheelhouse$server$data_dir" ] || usage_error "--uninstall takes no install options"
    uninstall
    exit 0
fi

# --- Check the options before changing anything ---------------------------------------------------------------

if [ -n "$wheel" ]; then
    [ -f "$wheel" ] || usage_error "--wheel $wheel: no such file"
    case "$wheel" in *.whl) ;; *) usage_error "--wheel $wheel is not a wheel (.whl)" ;; esac
    wheel=$(cd "$(dirname "$wheel")" && pwd)/$(basename "$wheel")
fi
if [ -n "$wheelhouse" ]; then
    [ -d "$wheelhouse" ] || usage_error "--wheelhouse $wheelhouse is not a directory"
    [ -z "$index_url" ] || usage_error "--wheelhouse and --index-url exclude each other"
    wheelhouse=$(cd "$wheelhouse" && pwd)
fi
if [ -n "$index_url" ]; then
    [[ $index_url =~ ^https?://[^[:space:]]+$ ]] || usage_error "--index-url $index_url is not an http(s) URL"
fi
# Both go into station.env and a unit drop-in: plain characters only.
if [ -n "$server" ]; then
    [[ $server =~ ^https?://[A-Za-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._~/-]*)?$ ]] ||
        usage_error "--server $server: give the sync server's URL, e.g. https://sync.bank.example"
else
    server=$(env_value STATION_SERVER_URL)
fi
if [ -n "$data_dir" ]; then
    data_dir=${data_dir%/}
    if ! [[ $data_dir =~ ^(/[A-Za-z0-9._-]+){2,}$ ]] || [[ $data_dir =~ /\.\.?(/|$) ]]; then
        usage_error "--data-dir $data_dir: give an absolute path of plain characters, e.g. /var/lib/station"
    fi
    case "$data_dir/" in
        /home/* | /root/* | /run/* | /tmp/* | /var/tmp/* | /proc/* | /sys/* | /dev/* | "$PREFIX"/* | \
            "$CONF_DIR"/* | "$KIOSK_HOME"/* | "$KIOSK_CACHE"/* | /usr/* | /etc/* | /bin/* | /sbin/* | /lib/*)
            usage_error "--data-dir $data_dir: the station cannot keep its data there (use /var/lib/NAME)" ;;
    esac
fi
previous_data_dir=$(env_value STATION_DATA_DIR)
data_dir=${data_dir:-${previous_data_dir:-$DEFAULT_DATA_DIR}}
# Never take over a folder with someone else's files in it (--data-dir /var/lib would make /var/lib private).
if [ -d "$R$data_dir" ] && [ "$(stat -c %u "$R$data_dir")" != "$(user_field "$STATION_USER" 3)" ] &&
    [ ! -e "$R$data_dir/config.json" ] && [ -n "$(find "$R$data_dir" -mindepth 1 -maxdepth 1 -print -quit)" ]; then
    usage_error "--data-dir $data_dir already holds other files: give a new folder"
fi
if [ -n "$previous_data_dir" ] && [ "$previous_data_dir" != "$data_dir" ] &&
    [ -e "$R$previous_data_dir/config.json" ] && [ ! -e "$R$data_dir/config.json" ]; then
    die "the station's data is in $previous_data_dir: stop the station (systemctl stop station), move the folder to" \
        "$data_dir yourself, then run install.sh again"
fi
[ -x "$python" ] || usage_error "--python $python is not an executable"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$python is older than Python 3.11"
for unit in "${UNITS[@]}"; do
    [ -f "$HERE/systemd/$unit" ] || die "$HERE/systemd/$unit is missing: run install.sh from the kit's provisioning/"
done

# --- Debian packages -------------------------------------------------------------------------------------------

installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }
apt_candidate() { apt-cache policy "$1" 2>/dev/null | grep -q 'Candidate: [^(]'; }

debian_packages() {
    # cage: the kiosk's Wayland compositor (see station-kiosk.service for why).
    # fonts-wqy-microhei: a compact CJK font for Chromium (fonts-noto-cjk is ten times its size).
    # espeak-ng: reads amounts aloud; its Mandarin voices (cmn, cmn-latn-pinyin) are in espeak-ng-data.
    # libpam-systemd, dbus: the kiosk's logind session that gives it the screen and touch panel.
    # libusb-1.0-0: python-escpos's USB printers; python3-venv: the venv; ca-certificates: HTTPS to the bank.
    local wanted=(python3-venv cage fonts-wqy-microhei espeak-ng espeak-ng-data libpam-systemd dbus libusb-1.0-0
        ca-certificates)
    local missing=() pkg
    for pkg in "${wanted[@]}"; do
        installed "$pkg" || missing+=("$pkg")
    done
    local browser_missing=1
    if installed chromium || installed chromium-browser; then
        browser_missing=0
    fi
    if [ ${#missing[@]} -eq 0 ] && [ "$browser_missing" -eq 0 ]; then
        say "Debian packages: all present"
        return
    fi
    export DEBIAN_FRONTEND=noninteractive
    say "Debian packages: updating the package lists"
    apt-get update -qq
    if [ "$browser_missing" -eq 1 ]; then
        # Debian 12 calls it chromium; Raspberry Pi OS Bookworm ships its own build as chromium-browser (newer
        # releases call that chromium too). On a Pi, prefer the Pi's build (hardware video decoding).
        local candidates=(chromium chromium-browser)
        [ ! -f /etc/rpi-issue ] || candidates=(chromium-browser chromium)
        for pkg in "${candidates[@]}" none; do
            if [ "$pkg" = none ]; then
                die "neither chromium nor chromium-browser can be installed from this machine's package sources"
            fi
            if apt_candidate "$pkg"; then
                missing+=("$pkg")
                break
            fi
        done
    fi
    say "Debian packages: installing ${missing[*]}"
    apt-get install -y -qq "${missing[@]}" >/dev/null
    did "installed ${missing[*]}"
}

if [ "$skip_apt" -eq 1 ]; then
    say "Debian packages: skipped (--skip-apt${R:+, --root})"
else
    command -v apt-get >/dev/null || die "no apt-get: this is not Debian or Raspberry Pi OS (use --skip-apt)"
    debian_packages
fi

# --- Users -----------------------------------------------------------------------------------------------------


ensure_user() {
    local user=$1 home=$2
    if [ -z "$(user_field "$user" 1)" ]; then
        useradd "${prefix_opt[@]}" --system --user-group --home-dir "$home" --no-create-home \
            --shell /usr/sbin/nologin --comment "Village service station ($user)" "$user"
        did "created system user $user"
    fi
}

say "Users"
ensure_user "$STATION_USER" "$data_dir"
ensure_user "$KIOSK_USER" "$KIOSK_HOME"
# The kiosk's logind session already grants the screen, input and sound; the groups keep them if it does not.
for group in video render input audio; do
    if group_exists "$group" && ! in_group "$group" "$KIOSK_USER"; then
        usermod "${prefix_opt[@]}" --append --groups "$group" "$KIOSK_USER"
        did "added $KIOSK_USER to group $group"
    fi
done
station_uid=$(user_field "$STATION_USER" 3)
station_gid=$(user_field "$STATION_USER" 4)

# --- Files -----------------------------------------------------------------------------------------------------

# put_file MODE DEST < content: write DEST (under the root) only when its content or mode differs.
put_file() {
    local mode=$1 dest=$R$2 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [ -f "$dest" ] && cmp -s "$tmp" "$dest" && [ "$(stat -c %a "$dest")" = "${mode#0}" ]; then
        rm -f "$tmp"
        return
    fi
    install -D -m "$mode" -o 0 -g 0 "$tmp" "$dest"
    rm -f "$tmp"
    did "wrote $2"
}

ensure_dir() {
    local mode=$1 owner=$2 group=$3 dir=$R$4
    if [ ! -d "$dir" ]; then
        install -d -m "$mode" -o "$owner" -g "$group" "$dir"
        did "created $4"
        return
    fi
    if [ "$(stat -c '%a %u %g' "$dir")" != "${mode#0} $owner $group" ]; then
        chmod "$mode" "$dir"
        chown "$owner:$group" "$dir"
        did "set $4 to mode $mode, owner $owner:$group"
    fi
}

say "Data folder $data_dir"
if [ ! -d "$R$(dirname "$data_dir")" ]; then
    install -d -m 0755 "$R$(dirname "$data_dir")"
fi
ensure_dir 0700 "$station_uid" "$station_gid" "$data_dir"
# A command run as root in the folder (`sudo station enroll ...`) leaves files the station cannot open.
foreign=$(find "$R$data_dir" ! -uid "$station_uid" -print | wc -l)
if [ "$foreign" -gt 0 ]; then
    find "$R$data_dir" ! -uid "$station_uid" -exec chown "$station_uid:$station_gid" {} +
    did "gave $foreign files in $data_dir back to $STATION_USER"
fi

say "Settings $ENV_FILE"
{
    echo "# Written by provisioning/install.sh; read by station.service (EnvironmentFile=). Re-run it to change."
    echo "STATION_DATA_DIR=$data_dir"
    [ -z "$server" ] || echo "STATION_SERVER_URL=$server"
} | put_file 0644 "$ENV_FILE"

# --- The kit in its venv -------------------------------------------------------------------------------------

say "The kit in $VENV"
if [ ! -x "$R$VENV/bin/python" ]; then
    "$python" -m venv "$R$VENV"
    did "created the venv"
fi
pip=("$R$VENV/bin/python" -m pip --disable-pip-version-check --no-input)
pip_source=()
[ -z "$index_url" ] || pip_source+=(--index-url "$index_url")
[ -z "$wheelhouse" ] || pip_source+=(--no-index --find-links "$wheelhouse")

if [ -n "$wheel" ]; then
    source_id="wheel $(sha256sum "$wheel" | cut -d' ' -f1)"
else
    source_id="index ${index_url:-${wheelhouse:-PyPI}}"
fi
installed_version() { "${pip[@]}" show "$DISTRIBUTION" 2>/dev/null | sed -n 's/^Version: //p'; }
if [ -n "$wheel" ] && [ -f "$R$STAMP" ] && [ "$(cat "$R$STAMP")" = "$source_id" ]; then
    :  # this very wheel is installed already
elif [ -n "$wheel" ]; then
    say "Installing $(basename "$wheel") and its dependencies (minutes on a Raspberry Pi)"
    if [ -n "$(installed_version)" ]; then
        # A rebuilt wheel may keep its version number: replace the kit itself, then see to its dependencies.
        "${pip[@]}" install --quiet "${pip_source[@]}" --force-reinstall --no-deps "$wheel"
    fi
    "${pip[@]}" install --quiet "${pip_source[@]}" "${wheel}[${EXTRAS}]"
    did "installed $DISTRIBUTION $(installed_version) from $(basename "$wheel")"
    printf '%s\n' "$source_id" | put_file 0644 "$STAMP"
else
    say "Installing or upgrading ${DISTRIBUTION}[${EXTRAS}] from ${index_url:-${wheelhouse:-PyPI}}"
    before=$("${pip[@]}" freeze --all)
    "${pip[@]}" install --quiet "${pip_source[@]}" --upgrade "${DISTRIBUTION}[${EXTRAS}]"
    [ "$before" = "$("${pip[@]}" freeze --all)" ] || did "installed $DISTRIBUTION $(installed_version)"
    printf '%s\n' "$source_id" | put_file 0644 "$STAMP"
fi
[ -x "$R$VENV/bin/station" ] || die "the kit installed no $VENV/bin/station"
PYTHONDONTWRITEBYTECODE=1 "$R$VENV/bin/station" --help >/dev/null || die "$VENV/bin/station does not run"

# The kiosk's browser, under one name for the unit.
browser=
for candidate in /usr/bin/chromium /usr/bin/chromium-browser; do
    if [ -x "$R$candidate" ]; then
        browser=$candidate
        break
    fi
done
if [ -z "$browser" ]; then
    browser=/usr/bin/chromium
    warn "no Chromium in ${root%/}/usr/bin: the kiosk starts once it is installed (apt-get install chromium)"
fi
if [ "$(readlink "$R$BROWSER_LINK" 2>/dev/null)" != "$browser" ]; then
    install -d -m 0755 "$R$PREFIX/bin"
    ln -sfn "$browser" "$R$BROWSER_LINK"
    did "linked $BROWSER_LINK to $browser"
fi

# --- systemd units ---------------------------------------------------------------------------------------------

say "systemd units"
for unit in "${UNITS[@]}"; do
    put_file 0644 "$UNIT_DIR/$unit" <"$HERE/systemd/$unit"
done
put_file 0644 "$PAM_FILE" <"$HERE/systemd/station-kiosk.pam"
if [ "$data_dir" = "$DEFAULT_DATA_DIR" ]; then
    if [ -e "$R$DROP_IN" ]; then
        rm -f "$R$DROP_IN"
        rmdir --ignore-fail-on-non-empty "$R$(dirname "$DROP_IN")"
        did "removed $DROP_IN"
    fi
else
    # The unit writes only to the data folder: point ReadWritePaths= at this one instead of the default.
    put_file 0644 "$DROP_IN" <<EOF
# Written by provisioning/install.sh --data-dir.
[Service]
ReadWritePaths=
ReadWritePaths=$data_dir
EOF
fi
for unit in "${ENABLED_UNITS[@]}"; do
    if ! systemctl "${systemctl_root[@]}" is-enabled --quiet "$unit" 2>/dev/null; then
        systemctl "${systemctl_root[@]}" enable --quiet "$unit"
        did "enabled $unit"
    fi
done

if [ -L "$R$UNIT_DIR/display-manager.service" ]; then
    warn "a desktop (display manager) is enabled and would fight the kiosk for the screen:" \
        "run \`systemctl set-default multi-user.target\` (or use Raspberry Pi OS Lite)"
fi

# --- Start ---------------------------------------------------------------------------------------------------

if [ "$changed" -eq 0 ]; then
    say "Nothing to change: the station is installed as asked."
elif [ "$live" -eq 1 ]; then
    systemctl daemon-reload
    if systemctl is-active --quiet station.service; then
        systemctl restart station.service   # the kiosk restarts with it (PartOf=)
        say "Restarted station.service with the new installation."
    else
        say "Installed. Reboot (systemctl reboot): the screen shows the station's enrollment screen."
    fi
else
    say "Installed${R:+ into $root}."
fi
