// Package slapdtest starts a private OpenLDAP directory (Debian's slapd)
// for tests: its configuration, schema, TLS certificates signed by a test CA
// and database live in a temporary directory; it listens on 127.0.0.1 on free
// ports (ldap:// where the server requires StartTLS before anything else, and
// ldaps://), and it is stopped by its own process ID. It never touches a
// system slapd.
//
// The directory holds the suffix dc=picket,dc=test with the memberof overlay
// (users carry memberOf for their groups of names) and a small schema that
// gives entries Active Directory's sAMAccountName and userPrincipalName
// (objectClass picketTestADUser), so that the filters written for Active
// Directory can be exercised too.
package slapdtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Names of the test directory.
const (
	Suffix = "dc=picket,dc=test"
	RootDN = "cn=admin,dc=picket,dc=test"
	RootPW = "root-secret"
)

// Server is one running (or stopped) slapd.
type Server struct {
	// Dir holds slapd.conf, the schema, the certificates, the database
	// and slapd.log.
	Dir string
	// URL is ldap://127.0.0.1:PORT; the server refuses every operation
	// before StartTLS.
	URL string
	// LDAPS is ldaps://127.0.0.1:PORT.
	LDAPS string
	// CAFile is the PEM certificate of the CA that signed the server's
	// certificate (for 127.0.0.1 and localhost).
	CAFile string

	tlsConfig *tls.Config
	bin       string
	cmd       *exec.Cmd
	exited    chan struct{}
}

// schema gives test entries Active Directory's login attributes, with AD's
// OIDs and the matching rules AD applies (case-insensitive).
const schema = `attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName'
	EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.656 NAME 'userPrincipalName'
	EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.1.1 NAME 'picketTestADUser' SUP top AUXILIARY
	MAY ( sAMAccountName $ userPrincipalName ) )
`

const config = `include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
include {{dir}}/ad.schema
pidfile {{dir}}/slapd.pid
argsfile {{dir}}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
TLSCACertificateFile {{dir}}/ca.pem
TLSCertificateFile {{dir}}/server.pem
TLSCertificateKeyFile {{dir}}/server.key
security tls=1
sizelimit 500
database mdb
maxsize 67108864
suffix "dc=picket,dc=test"
rootdn "cn=admin,dc=picket,dc=test"
rootpw root-secret
directory {{dir}}/db
overlay memberof
access to attrs=userPassword
	by self write
	by anonymous auth
	by * none
access to *
	by users read
	by * none
`

// Base is the top of the tree: the suffix and the people, groups and
// services units. Start adds it before the caller's entries.
const Base = `dn: dc=picket,dc=test
objectClass: dcObject
objectClass: organization
o: Picket test
dc: picket

dn: ou=people,dc=picket,dc=test
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=picket,dc=test
objectClass: organizationalUnit
ou: groups

dn: ou=services,dc=picket,dc=test
objectClass: organizationalUnit
ou: services
`

// The service account of People.
const (
	ServiceDN       = "cn=picket,ou=services,dc=picket,dc=test"
	ServicePassword = "service-pw"
)

// People is a small organisation the tests share: the service account;
// alice (also known by AD's sAMAccountName and userPrincipalName "alice" and
// "alice@picket.test") in staff; bob in no group; carol in students, and
// students in gamers. Each user's password is their uid and "-pw".
const People = `dn: cn=picket,ou=services,dc=picket,dc=test
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: picket
userPassword: service-pw

dn: uid=alice,ou=people,dc=picket,dc=test
objectClass: inetOrgPerson
objectClass: picketTestADUser
uid: alice
cn: Alice Archer
sn: Archer
sAMAccountName: alice
userPrincipalName: alice@picket.test
userPassword: alice-pw

dn: uid=bob,ou=people,dc=picket,dc=test
objectClass: inetOrgPerson
uid: bob
cn: Bob Baker
sn: Baker
userPassword: bob-pw

dn: uid=carol,ou=people,dc=picket,dc=test
objectClass: inetOrgPerson
uid: carol
cn: Carol Cook
sn: Cook
userPassword: carol-pw

dn: cn=staff,ou=groups,dc=picket,dc=test
objectClass: groupOfNames
cn: staff
member: uid=alice,ou=people,dc=picket,dc=test

dn: cn=students,ou=groups,dc=picket,dc=test
objectClass: groupOfNames
cn: students
member: uid=carol,ou=people,dc=picket,dc=test

dn: cn=gamers,ou=groups,dc=picket,dc=test
objectClass: groupOfNames
cn: gamers
member: cn=students,ou=groups,dc=picket,dc=test
`

// Start writes a directory into a new temporary directory, starts slapd on
// free loopback ports, waits until it answers (polling, with a deadline) and
// adds Base and then ldif. The server is stopped when the test ends.
func Start(t testing.TB, ldif string) *Server {
	t.Helper()
	bin, err := exec.LookPath("slapd")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/slapd"); err != nil {
			t.Fatalf("slapd is not installed (Debian: slapd ldap-utils; make tools installs them): %v", err)
		}
	}
	for _, tool := range []string{"ldapadd", "ldapmodify", "ldappasswd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (Debian: ldap-utils; make tools installs it)", tool)
		}
	}
	dir := t.TempDir()
	s := &Server{Dir: dir, CAFile: filepath.Join(dir, "ca.pem"), bin: bin}
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	pool, err := writeCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.tlsConfig = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	conf := strings.ReplaceAll(config, "{{dir}}", dir)
	for name, data := range map[string]string{"slapd.conf": conf, "ad.schema": schema} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s.URL = "ldap://" + freeAddr(t)
	s.LDAPS = "ldaps://" + freeAddr(t)
	s.start(t)
	t.Cleanup(func() { s.stop() })
	s.Add(t, Base)
	if ldif != "" {
		s.Add(t, ldif)
	}
	return s
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(s.Dir, "slapd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	// -d 0 keeps slapd in the foreground (our child, stopped by its PID)
	// without debug output.
	cmd := exec.Command(s.bin, "-f", filepath.Join(s.Dir, "slapd.conf"), "-h", s.URL+"/ "+s.LDAPS+"/", "-d", "0")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting slapd: %v", err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func(c *exec.Cmd, exited chan struct{}) { _ = c.Wait(); close(exited) }(cmd, s.exited)

	// Ready once a StartTLS connection binds as the root DN.
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			t.Fatalf("slapd exited at start:\n%s", s.Log())
		default:
		}
		if last = s.ping(); last == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.stop()
	t.Fatalf("slapd did not answer within 30s: %v\n%s", last, s.Log())
}

// ping binds as the root DN over StartTLS.
func (s *Server) ping() error {
	c, err := ldap.DialURL(s.URL, ldap.DialWithDialer(&net.Dialer{Timeout: time.Second}))
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetTimeout(2 * time.Second)
	if err := c.StartTLS(s.tlsConfig); err != nil {
		return err
	}
	return c.Bind(RootDN, RootPW)
}

// Stop stops slapd (SIGTERM, then SIGKILL after 10 seconds) and waits for
// it to exit. The data stays; Restart brings the server back on the same
// ports.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if !s.stop() {
		t.Fatalf("slapd did not stop:\n%s", s.Log())
	}
}

func (s *Server) stop() bool {
	if s.cmd == nil {
		return true
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	ok := true
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		ok = false
	}
	s.cmd = nil
	return ok
}

// Restart starts a stopped server again with its data, on the same ports.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if s.cmd != nil {
		t.Fatal("slapdtest: Restart of a running server")
	}
	s.start(t)
}

// Add adds the entries of an LDIF text with ldapadd, as the root DN over
// StartTLS.
func (s *Server) Add(t testing.TB, ldif string) {
	t.Helper()
	s.run(t, ldif, "ldapadd")
}

// Modify applies an LDIF change text with ldapmodify, as the root DN over
// StartTLS.
func (s *Server) Modify(t testing.TB, ldif string) {
	t.Helper()
	s.run(t, ldif, "ldapmodify")
}

// SetPassword sets the password of dn with ldappasswd (the Password Modify
// extended operation; slapd stores it hashed).
func (s *Server) SetPassword(t testing.TB, dn, password string) {
	t.Helper()
	s.run(t, "", "ldappasswd", "-s", password, dn)
}

func (s *Server) run(t testing.TB, stdin, tool string, args ...string) {
	t.Helper()
	argv := append([]string{"-x", "-ZZ", "-H", s.URL, "-D", RootDN, "-w", RootPW}, args...)
	cmd := exec.Command(tool, argv...)
	cmd.Env = append(os.Environ(), "LDAPTLS_CACERT="+s.CAFile, "LDAPTLS_REQCERT=demand", "LDAPCONF=/dev/null", "LDAPRC=/dev/null")
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", tool, err, out.String())
	}
}

// Log returns what slapd wrote so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "slapd.log"))
	return string(b)
}

// writeCerts writes ca.pem, server.pem and server.key (ECDSA P-256, valid
// for 127.0.0.1, ::1 and localhost) into dir and returns a pool with the CA.
func writeCerts(dir string) (*x509.CertPool, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Picket slapdtest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	for name, b := range map[string]*pem.Block{
		"ca.pem":     {Type: "CERTIFICATE", Bytes: caDER},
		"server.pem": {Type: "CERTIFICATE", Bytes: der},
		"server.key": {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(b), 0o600); err != nil {
			return nil, fmt.Errorf("slapdtest: %w", err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, nil
}
