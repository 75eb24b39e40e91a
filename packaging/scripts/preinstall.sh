#!/bin/sh
# plantedge pre-install (deb: preinst install|upgrade; rpm: %pre 1|2).
# Creates the system user and group before the files are unpacked, so that
# /var/lib/plantedge and /etc/plantedge get their owner and group.
set -e

user=plantedge
home=/var/lib/plantedge

nologin=/usr/sbin/nologin
[ -x "$nologin" ] || nologin=/sbin/nologin
[ -x "$nologin" ] || nologin=/bin/false

if ! getent group "$user" >/dev/null 2>&1; then
	if [ -f /etc/debian_version ] && command -v addgroup >/dev/null 2>&1; then
		addgroup --quiet --system "$user"
	elif command -v groupadd >/dev/null 2>&1; then
		groupadd --system "$user"
	else
		echo "plantedge: neither addgroup nor groupadd found; cannot create group $user" >&2
		exit 1
	fi
fi

if ! getent passwd "$user" >/dev/null 2>&1; then
	if [ -f /etc/debian_version ] && command -v adduser >/dev/null 2>&1; then
		adduser --quiet --system --ingroup "$user" --home "$home" --no-create-home \
			--shell "$nologin" --disabled-password "$user"
	elif command -v useradd >/dev/null 2>&1; then
		useradd --system --gid "$user" --home-dir "$home" --no-create-home \
			--shell "$nologin" --comment "plantedge agent" "$user"
	else
		echo "plantedge: neither adduser nor useradd found; cannot create user $user" >&2
		exit 1
	fi
fi

# rpm upgrade: a plantedge.yaml.rpmsave beside a config in place is an older
# backup; set it apart, so that %posttrans restores only the one this
# upgrade makes (see posttrans.sh).
root=${DPKG_ROOT:-}
conf=$root/etc/plantedge/plantedge.yaml
case "${1:-}" in
[2-9] | [1-9][0-9]*)
	if [ -e "$conf" ] && [ -e "$conf.rpmsave" ]; then
		# a failed rename must not fail the upgrade over a backup's name
		mv "$conf.rpmsave" "$conf.rpmsave.$(date -u +%Y%m%dT%H%M%SZ)" ||
			echo "plantedge: could not set $conf.rpmsave apart" >&2
	fi
	;;
esac

exit 0
