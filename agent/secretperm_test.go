package agent_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/plantedge/plantedge/agent"
	"github.com/plantedge/plantedge/agent/config"
)

// passwordChildEnv makes the test binary read a broker's password file
// (agent.MQTTConfig) and print the error.
const passwordChildEnv = "PLANTEDGE_TEST_PASSWORD_FILE"

func mqttConfigAndPrint(file string) int {
	_, err := agent.MQTTConfig(config.MQTTBroker{Name: "b", URL: "tcp://127.0.0.1:1", ClientID: "c", Username: "u", PasswordFile: file}, nil, nil)
	fmt.Println(err)
	return 0
}

// A password file the agent's user may not read (root-only, as the example
// suggests for LoadCredential=) stopped the source with "read secret …:
// permission denied" in the log and in status, not what to do — validate
// says it (the technician probe).
func TestPasswordFileNotReadableSaysWhatToDo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run a child as another user")
	}
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pw := filepath.Join(dir, "mqtt-password")
	if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "child")
	src, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), passwordChildEnv+"="+pw)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child as nobody: %v\n%s", err, out)
	}
	got := string(out)
	if !strings.Contains(got, "permission denied") || !strings.Contains(got, "chgrp ") || !strings.Contains(got, "chmod 640 "+pw) ||
		!strings.Contains(got, "LoadCredential=") || strings.Contains(got, "secret\n") {
		t.Errorf("error for a password file the agent may not read:\n%s", got)
	}
}
