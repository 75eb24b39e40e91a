#!/bin/sh
# plantedge rpm %posttrans: runs once the whole transaction is done.
# Releases up to the first ones shipped /etc/plantedge/plantedge.yaml as
# %config(noreplace); upgrading from one, rpm erases the old package's files
# after the new %post ran — the configuration too, an edited one kept as
# plantedge.yaml.rpmsave. Put it back (or make it from the example), so that
# the next start finds it.
set -e

root=${DPKG_ROOT:-}
conf=$root/etc/plantedge/plantedge.yaml
example=$root/usr/share/plantedge/plantedge.yaml

if [ -e "$conf" ] || [ ! -d "$root/etc/plantedge" ]; then
	exit 0
fi
if [ -e "$conf.rpmsave" ]; then
	mv "$conf.rpmsave" "$conf"
elif [ -f "$example" ]; then
	(umask 027 && cp "$example" "$conf")
else
	exit 0
fi
chown root:plantedge "$conf"
chmod 0640 "$conf"
exit 0
