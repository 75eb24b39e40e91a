// The file system itself builds on Linux only, and not on 32-bit systems
// (go-fuse does not): see powercut.go.

package powercut
