// Package testutil holds what the tests of several packages share, so that
// it is written once: a clock the test moves by hand (Clock), a buffer safe
// for concurrent writes for logs (SyncBuffer), the demo feeds copied to a
// temporary directory (CopyFeeds), a short temporary directory for sockets
// and servers (ShortTempDir), and the corpus of odd host spellings that
// every reader of hosts must agree on (Hosts). Only tests import it.
package testutil
