package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
)

// TestClientRejected: the error crypto/tls returns to a server whose client
// refused the certificate with an alert is told by its type (a *net.OpError
// "remote error"), not by its text; a client that merely went away before
// the certificate was sent does not count.
func TestClientRejected(t *testing.T) {
	ca := testCA(t)
	server, client := net.Pipe()
	defer server.Close()
	go func() {
		c := tls.Client(client, &tls.Config{ServerName: "pinned.example"}) // trusts only the system roots
		c.Handshake()
		c.Close()
	}()
	err := tls.Server(server, ca.TLSConfig("pinned.example")).Handshake()
	if err == nil {
		t.Fatal("the handshake succeeded; want the client's alert")
	}
	if !clientRejected(err, false) {
		t.Errorf("clientRejected(%v): got false, want true for the client's alert", err)
	}
	for _, err := range []error{io.EOF, &net.OpError{Op: "read", Err: io.ErrUnexpectedEOF}, errors.New("remote error: tls: bad certificate")} {
		if clientRejected(err, false) {
			t.Errorf("clientRejected(%v) before the certificate was sent: got true, want false", err)
		}
	}
	if !clientRejected(io.EOF, true) {
		t.Error("clientRejected(EOF) after the certificate was sent: got false, want true")
	}
}
