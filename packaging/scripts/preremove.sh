#!/bin/sh
# plantedge pre-remove.
#   deb: prerm remove|upgrade|deconfigure|failed-upgrade
#   rpm: %preun 0 (erase) | 1+ (upgrade)
# Stops the service only when the package goes away; an upgrade restarts it
# from postinstall instead. A Debian remove keeps the enable link, as it keeps
# the configuration and the buffer (as Debian's own helper does): installed
# again, the service starts at the next boot as before; purge removes the
# link. An rpm erase is final: it disables the service.
set -e

case "${1:-}" in
remove | deconfigure | 0) ;;
*) exit 0 ;;
esac

if command -v systemctl >/dev/null 2>&1; then
	if [ -d "${DPKG_ROOT:-}/run/systemd/system" ]; then
		systemctl stop plantedge.service || true
	fi
	if [ "$1" = 0 ]; then
		systemctl disable plantedge.service >/dev/null 2>&1 || true
	fi
fi

exit 0
