// Package packaging holds the nfpm configuration, the systemd unit and the
// maintainer scripts of the plantedge .deb and .rpm; its tests build the
// packages with `make package` and check what they install.
package packaging
