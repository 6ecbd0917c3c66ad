#!/bin/sh
# tests/apt-quiet-install.sh - install Debian packages whose daemons the
# tests run themselves, without leaving the packaged services running.
#
# Usage: tests/apt-quiet-install.sh PKG...   (as root)
#
# prometheus and prometheus-node-exporter ship system services (prometheus
# on :9090, node_exporter on :9100) that their postinst starts and enables.
# The tests never use them: tests/integration/prometheus.py starts its own
# prometheus on a free loopback port, the benchmark its own node_exporter,
# and a service scraping in the background would only add load to what
# the benchmark measures. So, for the packages this script installs:
#   - nothing is started during the install: Debian's maintainer scripts
#     start services through invoke-rc.d (sysvinit) or deb-systemd-invoke
#     (systemd), which both ask /usr/sbin/policy-rc.d first and start
#     nothing when it exits 101. When the machine has no policy-rc.d (an
#     image built for containers usually has one), one is put there for
#     the install and removed after;
#   - with systemd running (/run/systemd/system), each installed package's
#     units are disabled (and stopped, in case) so they do not start at the
#     next boot either; without systemd nothing runs them (no init starts
#     /etc/init.d scripts in a container), and `update-rc.d NAME disable`
#     keeps a sysvinit boot from starting them.
# Packages already installed are left alone (and so are their services:
# the script only says when one is running). apt-get update runs only when
# apt does not know a package, or an install from the current lists fails.
#
# Exit status: 0 installed (or nothing to do), 1 failure, 77 not root and
# something is missing (automake's "skipped").
set -u
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
export PATH DEBIAN_FRONTEND=noninteractive

say() { echo "apt-quiet-install: $*"; }
systemd_runs() { [ -d /run/systemd/system ]; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=
for p in "$@"; do
    installed "$p" || missing="$missing $p"
done

# Says so when a service of an installed package runs (the tests do not
# need it; the benchmark's figures may suffer): the operator decides.
report_running() {
    for p in "$@"; do
        for unit in $(dpkg -L "$p" 2>/dev/null | sed -n 's|^/lib/systemd/system/\([^/]*\.service\)$|\1|p'); do
            if systemd_runs && systemctl is-active --quiet "$unit" 2>/dev/null; then
                say "note: $unit is running (not started by the tests; systemctl disable --now $unit to stop it)"
            fi
        done
    done
}

if [ -z "$missing" ]; then
    report_running "$@"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "skip: not root and missing:$missing (apt-get install$missing)"
    exit 77
fi

policy=/usr/sbin/policy-rc.d
made_policy=no
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# tests/apt-quiet-install.sh: start no service during its install\nexit 101\n' >"$policy" &&
        chmod 755 "$policy" && made_policy=yes
    trap '[ "$made_policy" = yes ] && rm -f "$policy"' EXIT
    trap 'exit 130' INT TERM
fi

say "installing:$missing (their services are not started)"
# shellcheck disable=SC2086
if ! apt-get install -y -q --no-install-recommends $missing >&2; then
    apt-get update -q >&2 &&
        apt-get install -y -q --no-install-recommends $missing >&2 ||
        { say "apt-get install$missing failed" >&2; exit 1; }
fi

for p in $missing; do
    for unit in $(dpkg -L "$p" 2>/dev/null | sed -n 's|^/lib/systemd/system/\([^/@]*\.\(service\|timer\)\)$|\1|p'); do
        if systemd_runs; then
            systemctl disable --now "$unit" >/dev/null 2>&1 && say "disabled $unit"
        fi
    done
    for script in $(dpkg -L "$p" 2>/dev/null | sed -n 's|^/etc/init.d/\([^/]*\)$|\1|p'); do
        systemd_runs || update-rc.d "$script" disable >/dev/null 2>&1 || true
    done
done
exit 0
