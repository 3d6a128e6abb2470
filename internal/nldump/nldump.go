// Package nldump reads netlink dumps with bare system calls: for the few
// listings every program opening a root makes (links, rule tables), where
// a full netlink library's setup cost more than the dump itself.
package nldump

import (
	"bytes"
	"encoding/binary"
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// Dump sends one dump request of type typ with payload (the family
// header the request type wants) on a new socket of the netlink protocol
// proto, and returns the messages of the reply up to NLMSG_DONE. A
// netlink error in the reply is returned as its errno.
func Dump(proto int, typ uint16, payload []byte) ([]syscall.NetlinkMessage, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	return DumpOn(fd, typ, payload)
}

// DumpOn is Dump on the netlink socket fd, which the caller keeps. A dump
// that fails may leave messages unread on it.
func DumpOn(fd int, typ uint16, payload []byte) ([]syscall.NetlinkMessage, error) {
	req := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(payload))
	req = append(req, payload...)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], typ)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:], 1) // sequence
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	var out []syscall.NetlinkMessage
	// A page, which syscall.NetlinkRIB reads into, can be less than one
	// message (a link with many attributes).
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, err
		}
		// The messages' data point into what is parsed, which the next
		// read would overwrite.
		msgs, err := syscall.ParseNetlinkMessage(bytes.Clone(buf[:n]))
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return nil, errors.New("a truncated netlink error")
				}
				if errno := int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
					return nil, unix.Errno(-errno)
				}
				return out, nil
			}
			out = append(out, m)
		}
	}
}
