#!/bin/sh
# plantedge post-install.
#   deb: postinst configure [OLD-VERSION] (no OLD-VERSION on first install)
#   rpm: %post 1 (install) | 2+ (upgrade)
# First install: daemon-reload and enable, but do not start: the configuration
# must be edited first. Upgrade: daemon-reload and restart if it was running.
set -e

root=${DPKG_ROOT:-}

case "${1:-}" in
configure)
	if [ -z "${2:-}" ]; then first=yes; else first=no; fi
	;;
abort-upgrade | abort-remove | abort-deconfigure)
	exit 0
	;;
[0-9]*)
	if [ "$1" -le 1 ]; then first=yes; else first=no; fi
	;;
*)
	echo "plantedge postinstall: unknown argument '${1:-}'" >&2
	exit 0
	;;
esac

# The configuration: the shipped example when there is none (first install,
# or removed by hand); an existing file, edited or not, is the admin's.
example=$root/usr/share/plantedge/plantedge.yaml
conf=$root/etc/plantedge/plantedge.yaml
if [ ! -e "$conf" ] && [ -f "$example" ]; then
	(umask 027 && cp "$example" "$conf")
	chown root:plantedge "$conf"
	chmod 0640 "$conf"
fi

# The package ships these with the right owner once preinstall has created the
# user; repeat it on first install for package managers that resolved the names
# before the user existed. Upgrades leave an admin's choices alone.
if [ "$first" = yes ]; then
	if [ -d "$root/var/lib/plantedge" ]; then
		chown plantedge:plantedge "$root/var/lib/plantedge"
		chmod 0750 "$root/var/lib/plantedge"
	fi
	if [ -e "$root/etc/plantedge" ]; then chown root:plantedge "$root/etc/plantedge"; fi
fi

# systemd may be absent (containers, chroots); the unit is installed anyway.
if [ -d "$root/run/systemd/system" ] && command -v systemctl >/dev/null 2>&1; then
	running=yes
	systemctl daemon-reload || true
else
	running=no
fi

if [ "$first" = yes ]; then
	# Said as it is: a container or chroot without systemctl enables nothing.
	state="installed and enabled, but NOT started"
	if ! command -v systemctl >/dev/null 2>&1; then
		state="installed, but NOT enabled (no systemctl here) and NOT started"
	elif ! systemctl ${root:+--root="$root"} enable plantedge.service >/dev/null 2>&1; then
		# `enable` only creates the wants/ symlink and works without a running systemd.
		state="installed, but NOT enabled and NOT started"
		echo "plantedge: could not enable plantedge.service; run: systemctl enable plantedge" >&2
	fi
	cat <<MSG

plantedge is $state.
  1. Edit /etc/plantedge/plantedge.yaml (site, Odoo URL, sources, machines).
  2. Put the Odoo API key, alone, in /etc/plantedge/odoo-api-key (root only):
       install -m 0600 /dev/null /etc/plantedge/odoo-api-key
     then paste the key into that file with any editor.
  3. Check it as the service's user:
       sudo -u plantedge plantedge validate -c /etc/plantedge/plantedge.yaml
  4. Start it:  systemctl start plantedge && sudo plantedge status
     (/etc/plantedge is readable by root and the plantedge group only)

MSG
elif [ "$running" = yes ]; then
	# The new binary takes over; the buffer is durable across the restart —
	# unless it refuses the configuration (a check added since the running
	# version, e.g. a leading-zero number): restarted, it would exit 78 and
	# stay down, reading no machine. The running agent (the version before,
	# in memory) keeps working instead, until the file is fixed.
	# Checked as the service's user where it exists: a file only root may
	# read is refused by the service too.
	bin=$root/usr/bin/plantedge
	rc=0
	refused=
	if systemctl is-active --quiet plantedge.service 2>/dev/null && [ -x "$bin" ] && [ -e "$conf" ]; then
		if command -v runuser >/dev/null 2>&1 && getent passwd plantedge >/dev/null 2>&1; then
			refused=$(runuser -u plantedge -- "$bin" validate -c "$conf" 2>&1 >/dev/null) || rc=$?
		else
			refused=$("$bin" validate -c "$conf" 2>&1 >/dev/null) || rc=$?
		fi
	fi
	# validate's exit 1 with its problems, which name the file (not a
	# runuser that could not run it).
	if [ "$rc" = 1 ] && case "$refused" in *plantedge.yaml*) true ;; *) false ;; esac; then
		cat >&2 <<MSG

plantedge: the new version refuses /etc/plantedge/plantedge.yaml, so the running
agent (the version before) was NOT restarted and keeps forwarding:
$refused
Fix the file (plantedge validate -c /etc/plantedge/plantedge.yaml says what
is wrong), then: systemctl restart plantedge

MSG
	else
		systemctl try-restart plantedge.service || true
	fi
	# Installed again after a remove (which stopped it), or stopped by hand:
	# enabled, so it starts at the next boot; say how to start it now.
	if systemctl is-enabled --quiet plantedge.service 2>/dev/null &&
		! systemctl is-active --quiet plantedge.service 2>/dev/null; then
		echo "plantedge.service is enabled but not running: systemctl start plantedge (if it does not stay up, journalctl -u plantedge says why)"
	fi
fi

exit 0
