package bufpool

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGetPut(t *testing.T) {
	for _, tt := range []struct {
		name string
		size int
		want int
	}{
		{"small", 100, Small},
		{"exactly small", Small, Small},
		{"large", Small + 1, Large},
	} {
		t.Run(tt.name, func(t *testing.T) {
			br := Get(strings.NewReader("line one\r\nline two\r\n"), tt.size)
			assert.Equal(t, tt.want, br.Size())
			l, err := br.ReadString('\n')
			require.NoError(t, err)
			assert.Equal(t, "line one\r\n", l)
			Put(br)
			br = Get(strings.NewReader("fresh\n"), tt.size)
			l, err = br.ReadString('\n')
			require.NoError(t, err)
			assert.Equal(t, "fresh\n", l, "a reused reader starts on its new source")
			Put(br)
		})
	}
	Put(nil) // harmless
}

func BenchmarkGetPut(b *testing.B) {
	r := strings.NewReader("")
	b.ReportAllocs()
	for b.Loop() {
		Put(Get(r, Small))
	}
}
