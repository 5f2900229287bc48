package bridge

import (
	"bufio"
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// SMTPInspector.Timeouts: the idle timeout follows the dialogue's phase. A
// pause longer than the command timeout is fine inside the message data
// and while the end of data waits for its reply; once that reply is in,
// the command timeout ends an idle session.
func TestSMTPPhaseTimeouts(t *testing.T) {
	for _, poller := range []bool{false, true} {
		opt := Options{IdleTimeout: time.Hour, SMTP: &SMTPInspector{Timeouts: &SMTPTimeouts{
			Command: 150 * time.Millisecond, DataInit: 10 * time.Second, DataBlock: 10 * time.Second, DataEnd: 10 * time.Second}}}
		if poller {
			p := &Poller{ParkAfter: 10 * time.Millisecond}
			t.Cleanup(func() { p.Close() })
			opt.Poller = p
		}
		l := startJoin(t, context.Background(), false, opt)
		br, cr := bufio.NewReader(l.backend), bufio.NewReader(l.client)
		l.backend.SetDeadline(time.Now().Add(20 * time.Second))
		l.client.SetDeadline(time.Now().Add(20 * time.Second))
		exchange := func(cmd, reply string) {
			t.Helper()
			_, err := io.WriteString(l.client, cmd)
			require.NoError(t, err)
			got := make([]byte, len(cmd))
			_, err = io.ReadFull(br, got)
			require.NoError(t, err)
			if reply != "" {
				_, err = io.WriteString(l.backend, reply)
				require.NoError(t, err)
				_, err = cr.ReadString('\n')
				require.NoError(t, err, "poller %v: the session is alive after %q", poller, cmd)
			}
		}
		exchange("DATA\r\n", "354 go on\r\n")
		time.Sleep(500 * time.Millisecond) // longer than Command, within DataBlock
		exchange("Subject: x\r\n\r\nhello\r\n", "")
		time.Sleep(500 * time.Millisecond)
		exchange(".\r\n", "")
		time.Sleep(500 * time.Millisecond) // the end of data waits for its reply
		_, err := io.WriteString(l.backend, "250 2.0.0 queued\r\n")
		require.NoError(t, err)
		_, err = cr.ReadString('\n')
		require.NoError(t, err, "poller %v: alive until the end of data's reply", poller)
		// Now a command is due within 150 ms.
		select {
		case res := <-l.done:
			assert.ErrorIs(t, res.err, ErrIdleTimeout, "poller %v", poller)
			assert.Equal(t, EndIdle, res.st.End)
			assert.Equal(t, int64(1), res.st.SMTP.Messages)
		case <-time.After(15 * time.Second):
			t.Fatalf("poller %v: the command timeout did not end the idle session", poller)
		}
	}
}

func TestSMTPTimeoutsDefaults(t *testing.T) {
	var zero SMTPTimeouts
	assert.Equal(t, 5*time.Minute, zero.of(phaseCommand))
	assert.Equal(t, 2*time.Minute, zero.of(phaseDataInit))
	assert.Equal(t, 3*time.Minute, zero.of(phaseDataBlock))
	assert.Equal(t, 10*time.Minute, zero.of(phaseDataEnd))
	assert.Equal(t, time.Second, (&SMTPTimeouts{DataEnd: time.Second}).of(phaseDataEnd))
}
