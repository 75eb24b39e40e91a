#!/bin/sh
# plantedge post-remove.
#   deb: postrm remove|purge|upgrade|disappear|failed-upgrade|abort-install|abort-upgrade
#   rpm: %postun 0 (erase) | 1+ (upgrade)
# remove keeps the buffer, the API key, the user and the enable link:
# reinstalling continues where it left off. purge (Debian only) also deletes the buffer in
# /var/lib/plantedge, the configuration and the API key. The system user is kept even on purge, as
# Debian does for system users: files elsewhere may still carry its uid.
set -e

root=${DPKG_ROOT:-}

if [ -d "$root/run/systemd/system" ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload || true
fi

case "${1:-}" in
purge)
	rm -rf "$root/var/lib/plantedge"
	rm -f "$root/etc/plantedge/odoo-api-key"
	# The configuration postinstall made (and what dpkg left of it when it
	# was a conffile of older versions).
	rm -f "$root/etc/plantedge/plantedge.yaml" "$root/etc/plantedge/plantedge.yaml.dpkg-"*
	rmdir "$root/etc/plantedge" 2>/dev/null || true
	# The enable link a remove kept (see preremove.sh). systemctl may refuse
	# to disable a unit whose file is gone: the link itself goes too.
	if command -v systemctl >/dev/null 2>&1; then
		systemctl ${root:+--root="$root"} disable plantedge.service >/dev/null 2>&1 || true
	fi
	rm -f "$root/etc/systemd/system/multi-user.target.wants/plantedge.service"
	;;
esac

exit 0
