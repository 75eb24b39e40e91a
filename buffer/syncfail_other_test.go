//go:build !(linux && !386 && !arm && !mips && !mipsle)

package buffer

// Where the power-cut tests do not build (go-fuse: Linux, 64-bit), there
// is no sync-failure child to run (main_test.go).
const syncFailChildEnv = "PLANTEDGE_BUFFER_SYNCFAIL_CHILD"

func syncFailChild() int { return 2 }
