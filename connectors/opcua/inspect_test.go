package opcua

import (
	"context"
	"os"
	"strings"
	"testing"
)

// TestInspectNeverCreatesCertificate: checking a configuration must not
// create the agent's client certificate (as root, in the agent's data
// directory, before the server trusts it); it says what is missing.
func TestInspectNeverCreatesCertificate(t *testing.T) {
	dir := t.TempDir()
	_, err := Inspect(context.Background(), Config{
		Name: "line1", Endpoint: "opc.tcp://127.0.0.1:1", SecurityPolicy: "Basic256Sha256",
		DataDir: dir, Nodes: []string{"ns=2;s=X"},
	})
	if err == nil || !strings.Contains(err.Error(), "no client certificate yet") {
		t.Fatalf("err = %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("data dir now holds %d files", len(entries))
	}
}
