package ticketkeys

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testKey returns a key whose bytes are i, i+1, ... so tests can tell keys
// apart and find them in text.
func testKey(i byte) [32]byte {
	var k [32]byte
	for j := range k {
		k[j] = i + byte(j)
	}
	return k
}

func TestParseFormats(t *testing.T) {
	k1, k2, k3, k4, k7 := testKey(1), testKey(50), testKey(100), testKey(200), testKey(7)
	text := "# mailedge ticket keys, newest first\n" +
		"\n" +
		"  " + base64.StdEncoding.EncodeToString(k1[:]) + "   # current\r\n" +
		strings.ToUpper(hex.EncodeToString(k2[:])) + "\n" +
		"\t" + base64.RawURLEncoding.EncodeToString(k3[:]) + "\n" +
		"# " + hex.EncodeToString(k7[:]) + " (commented out)\n" +
		base64.RawStdEncoding.EncodeToString(k4[:]) // no final newline
	keys, err := Parse([]byte(text))
	require.NoError(t, err)
	assert.Equal(t, [][32]byte{k1, k2, k3, k4}, keys)

	// Format writes what Parse reads, in order.
	back, err := Parse(Format(keys))
	require.NoError(t, err)
	assert.Equal(t, keys, back)
}

// TestParseErrors checks each refusal: the message names the line and
// never holds the line's text or a piece of it.
func TestParseErrors(t *testing.T) {
	good := testKey(1)
	goodB64 := base64.StdEncoding.EncodeToString(good[:])
	short := testKey(9)
	k33 := testKey(33)
	hexKey := hex.EncodeToString(k33[:])
	for _, tc := range []struct {
		name, text, want string
		secret           string // must not show in the error
	}{
		{"empty file", "", "no keys", ""},
		{"comments only", "# nothing yet\n\n   \n", "no keys", ""},
		{"hex of 31 bytes", goodB64 + "\n" + hex.EncodeToString(short[:31]) + "\n", "line 2: not a 32-byte key: 62 characters", hex.EncodeToString(short[:31])},
		{"hex of 33 bytes", hexKey + "ab\n", "line 1: not a 32-byte key: 66 characters", hexKey},
		{"base64 of 31 bytes", base64.StdEncoding.EncodeToString(short[:31]), "line 1: not a 32-byte key: 44 characters but not base64 of 32 bytes", base64.StdEncoding.EncodeToString(short[:31])},
		{"base64 of 33 bytes", base64.StdEncoding.EncodeToString(append(short[:], 7)), "line 1: not a 32-byte key: 44 characters but not base64 of 32 bytes", base64.StdEncoding.EncodeToString(short[:])},
		{"not hex", strings.Replace(hexKey, hexKey[10:11], "g", 1), "line 1: not a 32-byte key: 64 characters but not hexadecimal", hexKey[12:]},
		{"not base64", "\n\n" + goodB64[:20] + "!" + goodB64[21:], "line 3: not a 32-byte key: 44 characters but not base64", goodB64[21:]},
		{"non-zero padding bits", goodB64[:42] + "B=", "line 1: not a 32-byte key: 44 characters but not base64", goodB64[:42]},
		{"space inside", goodB64[:20] + " " + goodB64[20:], "line 1: not a 32-byte key: 45 characters", goodB64[:20]},
		{"zero key", strings.Repeat("0", 64), "line 1: the key is 32 zero bytes", ""},
		{"duplicate", goodB64 + "\n" + hex.EncodeToString(good[:]) + "\n", "line 2: the same key as line 1", goodB64},
		{"too many", manyKeys(MaxKeys + 1), "line 17: more than 16 keys", ""},
		{"binary", "\x00\x01\x02secret\xff", "line 1: not a 32-byte key: 10 characters", "secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := Parse([]byte(tc.text))
			require.Error(t, err)
			assert.Nil(t, keys)
			assert.Contains(t, err.Error(), tc.want)
			assert.True(t, strings.HasPrefix(err.Error(), "ticketkeys: "), err.Error())
			if tc.secret != "" {
				assertNoPiece(t, err.Error(), tc.secret)
			}
			if strings.Contains(tc.want, "no keys") {
				assert.ErrorIs(t, err, ErrNoKeys)
			}
		})
	}
}

// manyKeys returns n distinct keys in the file format.
func manyKeys(n int) string {
	keys := make([][32]byte, n)
	for i := range keys {
		keys[i] = testKey(byte(i + 1))
	}
	return string(Format(keys))
}

// assertNoPiece fails if msg holds any 6 consecutive characters of secret.
func assertNoPiece(t *testing.T, msg, secret string) {
	t.Helper()
	for i := 0; i+6 <= len(secret); i++ {
		if strings.Contains(msg, secret[i:i+6]) {
			t.Errorf("error %q holds %q, a piece of the key material", msg, secret[i:i+6])
			return
		}
	}
}

func TestFileSource(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys")
	k1, k2 := testKey(1), testKey(2)
	require.NoError(t, os.WriteFile(path, Format([][32]byte{k1, k2}), 0o600))
	keys, err := FileSource{Path: path}.Keys(context.Background())
	require.NoError(t, err)
	assert.Equal(t, [][32]byte{k1, k2}, keys)

	// Errors name the file and the line, after the package's prefix.
	bad := base64.StdEncoding.EncodeToString(k1[:]) + "\n" + hex.EncodeToString(k2[:30]) + "\n"
	require.NoError(t, os.WriteFile(path, []byte(bad), 0o600))
	_, err = FileSource{Path: path}.Keys(context.Background())
	require.Error(t, err)
	assert.Equal(t, "ticketkeys: "+path+": line 2: not a 32-byte key: 60 characters where 64 hex digits or 44 base64 characters are expected", err.Error())

	require.NoError(t, os.WriteFile(path, []byte("# keys come later\n"), 0o600))
	_, err = FileSource{Path: path}.Keys(context.Background())
	assert.ErrorIs(t, err, ErrNoKeys)
	assert.Equal(t, "ticketkeys: "+path+": no keys", err.Error())

	_, err = FileSource{Path: filepath.Join(dir, "missing")}.Keys(context.Background())
	assert.ErrorIs(t, err, os.ErrNotExist)

	_, err = FileSource{}.Keys(context.Background())
	assert.ErrorContains(t, err, "Path is empty")

	require.NoError(t, os.WriteFile(path, make([]byte, maxFileSize+1), 0o600))
	_, err = FileSource{Path: path}.Keys(context.Background())
	assert.ErrorContains(t, err, "larger than")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = FileSource{Path: path}.Keys(ctx)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestFingerprint(t *testing.T) {
	k := testKey(1)
	fp := Fingerprint(k)
	assert.Len(t, fp, 12)
	assert.Equal(t, fp, Fingerprint(k))
	assert.NotEqual(t, fp, Fingerprint(testKey(2)))
	assert.NotContains(t, hex.EncodeToString(k[:]), fp)
}

// TestErrorsCarryNoKeyMaterial runs every error path over a file whose
// lines are near-keys and checks that no message holds a piece of them.
func TestErrorsCarryNoKeyMaterial(t *testing.T) {
	k := testKey(77)
	h := hex.EncodeToString(k[:])
	b := base64.StdEncoding.EncodeToString(k[:])
	for _, line := range []string{h[:63], h + "0", h[:63] + "z", b[:42], b + "A", b[:30] + "*" + b[31:], "ab" + b, b[:22] + "  " + b[22:]} {
		_, err := Parse([]byte(line + "\n"))
		require.Error(t, err, line)
		assertNoPiece(t, err.Error(), line)
	}
	_, err := Parse([]byte(b + "\n" + b + "\n"))
	require.Error(t, err)
	assertNoPiece(t, err.Error(), b)
	assert.False(t, errors.Is(err, ErrNoKeys))
}
