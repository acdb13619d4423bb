package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/picket-proxy/picket/scanner"
)

// grpcService is gRPC's interop test service: unary, both one-way
// streamings and full duplex, with headers, trailers and error statuses.
type grpcService struct {
	testpb.UnimplementedTestServiceServer
}

func (grpcService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if st := req.GetResponseStatus(); st.GetCode() != 0 {
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	grpc.SetHeader(ctx, metadata.Pairs("x-head", "unary"))
	grpc.SetTrailer(ctx, metadata.Pairs("x-trail", "unary"))
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: req.GetPayload().GetBody()}}, nil
}

func (grpcService) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream testpb.TestService_StreamingOutputCallServer) error {
	for _, p := range req.GetResponseParameters() {
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
	}
	return nil
}

func (grpcService) StreamingInputCall(stream testpb.TestService_StreamingInputCallServer) error {
	total := 0
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(m.GetPayload().GetBody())
	}
}

func (grpcService) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			stream.SetTrailer(metadata.Pairs("x-trail", "duplex"))
			return nil
		}
		if err != nil {
			return err
		}
		for _, p := range m.GetResponseParameters() {
			if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
				return err
			}
		}
	}
}

// connectDialer dials addr through an HTTP CONNECT at proxyAddr.
func connectDialer(proxyAddr string) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", proxyAddr)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", addr, addr)
		resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
		if err != nil || resp.StatusCode != http.StatusOK {
			c.Close()
			return nil, fmt.Errorf("CONNECT %s: %v %v", addr, resp, err)
		}
		return c, nil // the proxy sends nothing before the client's ClientHello
	}
}

// A Go gRPC client and server talk through Picket's interception: the
// client's TLS must negotiate h2 (gRPC requires it), every call is decided
// and logged as a request, and unary calls, server, client and
// bidirectional streams, headers, trailers and error statuses all pass —
// with download scanning on, which must not hold gRPC messages back.
func TestGRPCThroughInterception(t *testing.T) {
	originCA := testCA(t)
	stls := originCA.TLSConfig("127.0.0.1")
	stls.NextProtos = nil // gRPC's credentials add h2
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(stls)))
	testpb.RegisterTestServiceServer(gs, grpcService{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	addr := ln.Addr().String()

	sc, err := scanner.New(scanner.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ca := testCA(t)
	tp := startInterceptingWith(t, ca, Config{Scanner: sc, Decider: DeciderFunc(func(_ context.Context, r *Request) (Decision, error) {
		if !r.Connect && strings.HasSuffix(r.URL.Path, "/EmptyCall") {
			return Decision{Action: Block, Verdict: "policy", Rule: "no-empty-calls"}, nil
		}
		return Decision{Action: Allow, Intercept: true}, nil
	})}, originCA.Certificate())

	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: poolOf(ca.Certificate())})),
		grpc.WithContextDialer(connectDialer(tp.addr)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := testpb.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("unary", func(t *testing.T) {
		var header, trailer metadata.MD
		resp, err := client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("ping")}},
			grpc.Header(&header), grpc.Trailer(&trailer))
		if err != nil {
			t.Fatal(err)
		}
		if string(resp.GetPayload().GetBody()) != "ping" || !equalMD(header, "x-head", "unary") || !equalMD(trailer, "x-trail", "unary") {
			t.Errorf("got %q, header %v, trailer %v", resp.GetPayload().GetBody(), header, trailer)
		}
	})
	t.Run("error status", func(t *testing.T) {
		_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.InvalidArgument), Message: "bad input"}})
		if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || st.Message() != "bad input" {
			t.Errorf("got %v, want InvalidArgument \"bad input\"", err)
		}
	})
	t.Run("server streaming", func(t *testing.T) {
		sizes := []int32{1, 10, 100 << 10, 3}
		var params []*testpb.ResponseParameters
		for _, s := range sizes {
			params = append(params, &testpb.ResponseParameters{Size: s})
		}
		stream, err := client.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: params})
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range sizes {
			m, err := stream.Recv()
			if err != nil || len(m.GetPayload().GetBody()) != int(s) {
				t.Fatalf("message %d: got %d bytes (%v), want %d", i, len(m.GetPayload().GetBody()), err, s)
			}
		}
		if _, err := stream.Recv(); err != io.EOF {
			t.Errorf("end of stream: got %v, want EOF", err)
		}
	})
	t.Run("client streaming", func(t *testing.T) {
		stream, err := client.StreamingInputCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{5, 50 << 10, 7} {
			if err := stream.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, n)}}); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := stream.CloseAndRecv()
		if err != nil || resp.GetAggregatedPayloadSize() != 5+50<<10+7 {
			t.Errorf("got %d (%v), want %d", resp.GetAggregatedPayloadSize(), err, 5+50<<10+7)
		}
	})
	t.Run("bidirectional ping-pong", func(t *testing.T) {
		// Each answer is a few bytes and the server then waits for the
		// next message: nothing may be held back on the way.
		stream, err := client.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			size := int32(i % 4)
			if err := stream.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: size}}}); err != nil {
				t.Fatal(err)
			}
			m, err := stream.Recv()
			if err != nil || len(m.GetPayload().GetBody()) != int(size) {
				t.Fatalf("round %d: got %d bytes (%v)", i, len(m.GetPayload().GetBody()), err)
			}
		}
		stream.CloseSend()
		if _, err := stream.Recv(); err != io.EOF {
			t.Fatalf("end of stream: got %v, want EOF", err)
		}
		if tr := stream.Trailer(); !equalMD(tr, "x-trail", "duplex") {
			t.Errorf("trailer: got %v", tr)
		}
	})
	t.Run("blocked method", func(t *testing.T) {
		_, err := client.EmptyCall(ctx, &testpb.Empty{})
		if st, _ := status.FromError(err); st.Code() != codes.PermissionDenied {
			t.Errorf("got %v, want PermissionDenied", err)
		}
	})

	// Every call is a request in the access log, over HTTP/2, in the
	// tunnel.
	for _, m := range []string{"UnaryCall", "StreamingOutputCall", "StreamingInputCall", "FullDuplexCall", "EmptyCall"} {
		url := "https://" + addr + "/grpc.testing.TestService/" + m
		l := tp.waitAccess(t, func(l map[string]any) bool { return l[fURL] == url })
		want := "allow"
		if m == "EmptyCall" {
			want = "block"
		}
		if l[fProto] != "HTTP/2.0" || l[fMethod] != "POST" || l[fAction] != want || l[fTunnel] == nil {
			t.Errorf("access line of %s: got %v", m, l)
		}
	}
}

func equalMD(md metadata.MD, key, value string) bool {
	v := md.Get(key)
	return len(v) == 1 && v[0] == value
}

// Downloads over HTTP/2 are scanned as over HTTP/1.1: in buffer mode a
// detected file becomes the block page, in trickle mode the stream is reset
// before the file is complete (here before any of it: it is all tail).
func TestHTTP2DownloadScanning(t *testing.T) {
	const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`
	body := eicar
	o, _ := h2Origin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		io.WriteString(w, body)
	}))
	sc, err := scanner.New(scanner.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ca := testCA(t)
	for _, mode := range []ScanMode{ScanBuffer, ScanTrickle} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			tp := startInterceptingWith(t, ca, Config{Scanner: sc, ScanMode: mode}, o.Certificate())
			resp, err := h2Client(t, tp, ca).Get(o.URL + "/file.bin")
			var got []byte
			if err == nil {
				if resp.ProtoMajor != 2 {
					t.Errorf("client side: got %s", resp.Proto)
				}
				got, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			switch mode {
			case ScanBuffer:
				if err != nil || resp.StatusCode != 403 || strings.Contains(string(got), "EICAR-STANDARD") {
					t.Errorf("buffer: got %v, %d bytes (%v), want the block page", resp, len(got), err)
				}
			case ScanTrickle:
				// The stream is reset: before the response head when the
				// whole file is held back (as here), else mid-body.
				if err == nil || !strings.Contains(err.Error(), "stream error") || len(got) >= len(body) {
					t.Errorf("trickle: got %d of %d bytes (%v), want a reset stream before the end", len(got), len(body), err)
				}
			}
			l := tp.waitAccess(t, func(l map[string]any) bool { return l[fURL] == o.URL+"/file.bin" })
			if l[fProto] != "HTTP/2.0" || l[fAction] != "block" || l[fScanResult] != "malicious" {
				t.Errorf("access line: got %v", l)
			}
		})
	}
}
