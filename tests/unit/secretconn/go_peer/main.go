// A CometBFT SecretConnection echo peer, used only by test_go_interop.py.
//
//	peer listen          listen on 127.0.0.1:0; print "PORT <port>" and "ID <node id>"
//	peer dial HOST:PORT  dial out; print "ID <node id>"
//
// Either way it runs CometBFT's own p2p/conn.MakeSecretConnection with a fresh Ed25519
// identity, prints "REMOTE <node id of the peer>", echoes every byte it reads back to the
// peer until EOF, then prints "TOTAL <bytes echoed>". Errors are printed as "ERROR ...".
package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/cometbft/cometbft/crypto/ed25519"
	"github.com/cometbft/cometbft/p2p/conn"
)

func say(format string, args ...any) {
	fmt.Printf(format+"\n", args...)
	_ = os.Stdout.Sync()
}

func main() {
	priv := ed25519.GenPrivKey()
	var c net.Conn
	var err error
	switch {
	case len(os.Args) == 2 && os.Args[1] == "listen":
		ln, lerr := net.Listen("tcp", "127.0.0.1:0")
		if lerr != nil {
			say("ERROR listen: %v", lerr)
			os.Exit(1)
		}
		say("PORT %d", ln.Addr().(*net.TCPAddr).Port)
		say("ID %s", hex.EncodeToString(priv.PubKey().Address()))
		c, err = ln.Accept()
	case len(os.Args) == 3 && os.Args[1] == "dial":
		say("ID %s", hex.EncodeToString(priv.PubKey().Address()))
		c, err = net.Dial("tcp", os.Args[2])
	default:
		say("ERROR usage: peer listen | peer dial HOST:PORT")
		os.Exit(2)
	}
	if err != nil {
		say("ERROR connect: %v", err)
		os.Exit(1)
	}
	sc, err := conn.MakeSecretConnection(c, priv)
	if err != nil {
		say("ERROR handshake: %v", err)
		os.Exit(1)
	}
	say("REMOTE %s", hex.EncodeToString(sc.RemotePubKey().Address()))
	buf := make([]byte, 70000)
	total := 0
	for {
		n, rerr := sc.Read(buf)
		if n > 0 {
			total += n
			if _, werr := sc.Write(buf[:n]); werr != nil {
				say("ERROR write: %v", werr)
				os.Exit(1)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			say("ERROR read: %v", rerr)
			os.Exit(1)
		}
	}
	say("TOTAL %d", total)
}
