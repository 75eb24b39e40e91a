package agent

import (
	"path/filepath"
	"testing"

	"github.com/plantedge/plantedge/agent/config"
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
