// Package softhsmtest gives tests a SoftHSM2 token: a PKCS#11 token in a
// temporary directory, made with Debian's softhsm2 (softhsm2-util and
// /usr/lib/softhsm/libsofthsm2.so).
//
// A PKCS#11 module is initialized once per process and reads SOFTHSM2_CONF
// only then, so the token is made once per test binary and shared: tests
// tell their keys apart by id and object. A package using it runs its tests
// through [Main], which removes the token's directory at the end.
//
// Without softhsm2 a test calling [Require] is skipped with a message
// saying what to install, except when the environment has CI=true: there it
// fails.
package softhsmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// The token every test shares.
const (
	Label = "jitgrant"
	PIN   = "1234"
	SOPIN = "5678"
)

// Module is where Debian's softhsm2 package installs the PKCS#11 module.
const Module = "/usr/lib/softhsm/libsofthsm2.so"

// Token is the shared SoftHSM2 token.
type Token struct {
	// Module is the PKCS#11 module's path.
	Module string
	// Label is the token's label.
	Label string
	// PINFile holds PIN (mode 0600): the URIs' pin-source.
	PINFile string
}

// URI returns a key URI for the token: module, token label, the given
// attributes (for example "id=01;object=ca"; none for the token alone) and
// pin-source.
func (tok Token) URI(attrs string) string {
	u := "pkcs11:module-path=" + tok.Module + ";token=" + tok.Label
	if attrs != "" {
		u += ";" + attrs
	}
	return u + "?pin-source=" + tok.PINFile
}

// state is the process's token; dir is removed by Main.
type state struct {
	once sync.Once
	dir  string
	tok  Token
	err  error
}

// process is the one token of the test binary: the module is initialized
// once per process, so the token must be too.
var process state

// Require returns the shared token, making it on first use. It skips t
// when softhsm2 is not installed, or fails it when CI=true.
func Require(t testing.TB) Token {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skipf("softhsmtest: SoftHSM2 tests run on linux only (this is %s)", runtime.GOOS)
	}
	if !pkcs11Built {
		t.Skip("softhsmtest: built without cgo (or with the nopkcs11 tag): PKCS#11 is not built in")
	}
	_, errUtil := exec.LookPath("softhsm2-util")
	_, errMod := os.Stat(Module)
	if errUtil != nil || errMod != nil {
		msg := "softhsmtest: SoftHSM2 is not installed (softhsm2-util on PATH and " + Module + " are needed): apt-get install -y softhsm2"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + " (CI=true: this test must run)")
		}
		t.Skip(msg)
	}
	process.once.Do(func() { process.tok, process.err = process.make() })
	if process.err != nil {
		t.Fatal(process.err)
	}
	return process.tok
}

// make creates the token directory, its configuration and the token.
func (s *state) make() (Token, error) {
	dir, err := os.MkdirTemp("", "softhsmtest-")
	if err != nil {
		return Token{}, fmt.Errorf("softhsmtest: %w", err)
	}
	s.dir = dir
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		return Token{}, fmt.Errorf("softhsmtest: %w", err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		return Token{}, fmt.Errorf("softhsmtest: %w", err)
	}
	// The module reads SOFTHSM2_CONF when it is initialized, in this
	// process: set for the whole process, never unset (Main removes the
	// directory at the end).
	if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
		return Token{}, fmt.Errorf("softhsmtest: %w", err)
	}
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", Label, "--pin", PIN, "--so-pin", SOPIN)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		return Token{}, fmt.Errorf("softhsmtest: softhsm2-util --init-token: %w\n%s", err, out)
	}
	pinFile := filepath.Join(dir, "pin")
	if err := os.WriteFile(pinFile, []byte(PIN+"\n"), 0o600); err != nil {
		return Token{}, fmt.Errorf("softhsmtest: %w", err)
	}
	return Token{Module: Module, Label: Label, PINFile: pinFile}, nil
}

// Main runs m's tests and then removes the token's directory, if a test
// made it; it returns m.Run's exit code. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(softhsmtest.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	if process.dir != "" {
		os.RemoveAll(process.dir)
	}
	return code
}
