package buffer

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		os.Exit(crashChild())
	}
	if os.Getenv(syncFailChildEnv) != "" {
		os.Exit(syncFailChild()) // (Linux: powercut_test.go)
	}
	goleak.VerifyTestMain(m)
}
