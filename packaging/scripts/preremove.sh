#!/bin/sh
# plantedge pre-remove.
#   deb: prerm remove|upgrade|deconfigure|failed-upgrade
#   rpm: %preun 0 (erase) | 1+ (upgrade)
# Stops and disables the service only when the package goes away; an upgrade
# restarts it from postinstall instead.
set -e

case "${1:-}" in
remove | deconfigure | 0) ;;
*) exit 0 ;;
esac

if command -v systemctl >/dev/null 2>&1; then
	if [ -d "${DPKG_ROOT:-}/run/systemd/system" ]; then
		systemctl stop plantedge.service || true
	fi
	systemctl disable plantedge.service >/dev/null 2>&1 || true
fi

exit 0
