package agent

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/internal/fstest"
)

// validate's check of buffer.max_bytes against the free space also looks
// at a data_dir not made yet (before the first start): its nearest parent's
// file system (it said nothing).
func TestQuotaOverDiskOfADataDirNotMadeYet(t *testing.T) {
	cfg := &config.Config{DataDir: filepath.Join(t.TempDir(), "not", "made", "yet"), Buffer: config.Buffer{MaxBytes: config.ByteSize(1 << 62)}}
	free, over := QuotaOverDisk(cfg)
	if !over || free <= 0 {
		t.Errorf("QuotaOverDisk = %d, %v; want over, with the parent's free bytes", free, over)
	}
	cfg.Buffer.MaxBytes = 1 << 20
	if _, over := QuotaOverDisk(cfg); over {
		t.Error("1 MiB over the free space")
	}
}

// The reserve file next to the buffer file counts within max_bytes, so its
// bytes are the quota's as the buffer file's are: a quota that fits the
// free space and both files is not said to be over the disk.
func TestQuotaOverDiskCountsTheReserveFile(t *testing.T) {
	data := t.TempDir()
	fstest.Tmpfs(t, data, "8m")
	cfg := &config.Config{DataDir: data}
	for _, p := range []string{cfg.BufferPath(), cfg.BufferPath() + ".reserve"} {
		if err := os.WriteFile(p, make([]byte, 1<<20), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	free, _ := QuotaOverDisk(cfg)
	cfg.Buffer.MaxBytes = config.ByteSize(free + 2<<20)
	if _, over := QuotaOverDisk(cfg); over {
		t.Errorf("max_bytes %d, the free %d bytes plus the two files' 2 MiB, said to be over the disk", cfg.Buffer.MaxBytes, free)
	}
	cfg.Buffer.MaxBytes++
	if _, over := QuotaOverDisk(cfg); !over {
		t.Errorf("max_bytes %d, a byte over, not said to be over the disk", cfg.Buffer.MaxBytes)
	}
}

// A data_dir that would not keep the buffer is named (the PEERS probe:
// /dev/shm and /tmp accepted without a word): a memory file system always,
// /tmp and /var/tmp for the service only (PrivateTmp), a disk never.
func TestVolatileDataDir(t *testing.T) {
	memory := func(dir string) bool {
		var fs syscall.Statfs_t
		return syscall.Statfs(dir, &fs) == nil && (fs.Type == tmpfsMagic || uint32(fs.Type) == ramfsMagic)
	}
	if !memory("/dev/shm") {
		t.Skip("/dev/shm is not a tmpfs here")
	}
	for _, service := range []bool{false, true} {
		cfg := &config.Config{DataDir: filepath.Join("/dev/shm", "plantedge-not-made", "data")}
		if why := VolatileDataDir(cfg, service); !strings.Contains(why, "in memory") {
			t.Errorf("%s (service %v): %q, want it named as memory", cfg.DataDir, service, why)
		}
	}
	for _, dir := range []string{"/tmp/plantedge-not-made", "/var/tmp/plantedge/data"} {
		if memory(filepath.Dir(dir)) {
			continue // a tmpfs /tmp: said as memory, above
		}
		cfg := &config.Config{DataDir: dir}
		if why := VolatileDataDir(cfg, true); !strings.Contains(why, "PrivateTmp=yes") {
			t.Errorf("%s for the service: %q, want PrivateTmp named", dir, why)
		}
		if why := VolatileDataDir(cfg, false); why != "" {
			t.Errorf("%s run by hand: %q, want nothing", dir, why)
		}
	}
	if dir := t.TempDir(); !memory(dir) {
		if why := VolatileDataDir(&config.Config{DataDir: filepath.Join(dir, "data")}, false); why != "" {
			t.Errorf("a data_dir on disk: %q", why)
		}
	}
	if why := VolatileDataDir(&config.Config{DataDir: "/var/lib/plantedge"}, true); why != "" && !memory("/var/lib") {
		t.Errorf("the package's data_dir: %q", why)
	}
}

// CheckSources has the connectors check what config validation let
// through (here, settings written into a loaded config), as a start or a
// reload would; without reading secrets, a password this user may not read
// is no problem.
func TestCheckSources(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "plantedge.yaml")
	yaml := `site: p
data_dir: ` + filepath.Join(dir, "data") + `
odoo: { url: "https://erp.example.com", database: prod, username: bot, api_key_file: /etc/plantedge/odoo-api-key }
opcua:
  - { name: plc, endpoint: "opc.tcp://127.0.0.1:4840", username: u, password_file: ` + filepath.Join(dir, "no-such-file") + ` }
mqtt:
  - { name: broker, url: "tcp://127.0.0.1:1883", client_id: pe }
machines:
  - id: m1
    workcenter: WC1
    good_count: { opcua: { server: plc, node: "ns=2;s=M1.Good" } }
    running: { mqtt: { broker: broker, topic: m1/run } }
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckSources(cfg, false); err != nil {
		t.Errorf("without reading secrets: %v", err)
	}
	if err := CheckSources(cfg, true); err == nil || !strings.Contains(err.Error(), "opcua plc") {
		t.Errorf("reading an absent password file: %v", err)
	}
	cfg.OPCUA[0].HeartbeatTimeout = config.Duration(time.Second)
	cfg.MQTT[0].BackoffMax = config.Duration(time.Millisecond)
	err = CheckSources(cfg, false)
	if err == nil || !strings.Contains(err.Error(), "heartbeat timeout") || !strings.Contains(err.Error(), "backoff") {
		t.Errorf("settings the connectors refuse: %v", err)
	}
}
