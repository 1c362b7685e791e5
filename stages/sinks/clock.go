package sinks

import (
	"strconv"
	"time"

	"github.com/chains-sensor/chains-sensor/stages"
)

// clock formats timestamps, reformatting the date and time only when the second changes.
type clock struct {
	utc  bool
	sec  int64
	loc  *time.Location
	date [19]byte // YYYY-MM-DD HH:MM:SS
	zone []byte   // Z or +hh:mm, for RFC 3339
}

func newClock(utc bool) *clock {
	c := &clock{utc: utc, sec: -1 << 62, loc: time.Local}
	if utc {
		c.loc = time.UTC
	}
	return c
}

func (c *clock) update(t time.Time) {
	sec := t.Unix()
	if sec == c.sec {
		return
	}
	c.sec = sec
	t = t.In(c.loc)
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	b := c.date[:0]
	b = append4(b, y)
	b = append(b, '-')
	b = append2(b, int(mo))
	b = append(b, '-')
	b = append2(b, d)
	b = append(b, ' ')
	b = append2(b, h)
	b = append(b, ':')
	b = append2(b, mi)
	b = append(b, ':')
	append2(b, s)
	_, off := t.Zone()
	c.zone = c.zone[:0]
	if off == 0 && c.utc {
		c.zone = append(c.zone, 'Z')
	} else {
		sign := byte('+')
		if off < 0 {
			sign, off = '-', -off
		}
		c.zone = append(c.zone, sign)
		c.zone = append2(c.zone, off/3600)
		c.zone = append(c.zone, ':')
		c.zone = append2(c.zone, off/60%60)
	}
}

// appendSeconds appends "YYYY-MM-DD HH:MM:SS".
func (c *clock) appendSeconds(b []byte, t time.Time) []byte {
	c.update(t)
	return append(b, c.date[:]...)
}

// appendMicro appends "YYYY-MM-DD HH:MM:SS.ffffff".
func (c *clock) appendMicro(b []byte, t time.Time) []byte {
	b = c.appendSeconds(b, t)
	return appendFrac(b, t.Nanosecond())
}

// appendRFC3339 appends "YYYY-MM-DDTHH:MM:SS.ffffff" and the zone ("Z" with --utc).
func (c *clock) appendRFC3339(b []byte, t time.Time) []byte {
	c.update(t)
	n := len(b)
	b = append(b, c.date[:]...)
	b[n+10] = 'T'
	b = appendFrac(b, t.Nanosecond())
	return append(b, c.zone...)
}

// A capture file's impossible timestamps, as tcpdump prints them.
const (
	timeOverflow     = "[timestamp overflow]"
	invalidMicroNote = " (invalid us)"
	invalidNanoNote  = " (invalid ns)"
)

// appendPacketSeconds appends p's time as appendSeconds does; a timestamp past what a date
// shows as "[timestamp overflow]", and one whose fraction field is past a second with the
// date of its seconds field and "(invalid us)" or "(invalid ns)".
func (c *clock) appendPacketSeconds(b []byte, p *stages.Packet) []byte {
	switch p.TimeNote {
	case stages.TimeOverflow:
		return append(b, timeOverflow...)
	case stages.TimeInvalidMicro:
		return append(c.appendSeconds(b, p.Time), invalidMicroNote...)
	case stages.TimeInvalidNano:
		return append(c.appendSeconds(b, p.Time), invalidNanoNote...)
	}
	return c.appendSeconds(b, p.Time)
}

// appendPacketMicro appends p's time as appendMicro does; an impossible one as
// appendPacketSeconds, with the fraction field as written (".1500000 (invalid us)").
func (c *clock) appendPacketMicro(b []byte, p *stages.Packet) []byte {
	switch p.TimeNote {
	case stages.TimeOverflow:
		return append(b, timeOverflow...)
	case stages.TimeInvalidMicro, stages.TimeInvalidNano:
		b = append(c.appendSeconds(b, p.Time), '.')
		b = strconv.AppendUint(b, uint64(p.TimeFrac), 10)
		if p.TimeNote == stages.TimeInvalidMicro {
			return append(b, invalidMicroNote...)
		}
		return append(b, invalidNanoNote...)
	}
	return c.appendMicro(b, p.Time)
}

// timeNoteJSON is the ts_invalid value of an impossible timestamp.
func timeNoteJSON(p *stages.Packet) string {
	switch p.TimeNote {
	case stages.TimeOverflow:
		return "overflow"
	case stages.TimeInvalidMicro:
		return "fraction " + strconv.FormatUint(uint64(p.TimeFrac), 10) + " us"
	case stages.TimeInvalidNano:
		return "fraction " + strconv.FormatUint(uint64(p.TimeFrac), 10) + " ns"
	}
	return ""
}

// appendFrac appends ".ffffff", or nine digits when the nanoseconds need them.
func appendFrac(b []byte, ns int) []byte {
	digits, v := 6, ns/1000
	if ns%1000 != 0 {
		digits, v = 9, ns
	}
	b = append(b, '.')
	var tmp [9]byte
	for i := digits - 1; i >= 0; i-- {
		tmp[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, tmp[:digits]...)
}

func append2(b []byte, v int) []byte {
	return append(b, byte('0'+v/10%10), byte('0'+v%10))
}

func append4(b []byte, v int) []byte {
	if v < 0 || v > 9999 {
		return strconv.AppendInt(b, int64(v), 10)
	}
	return append(b, byte('0'+v/1000), byte('0'+v/100%10), byte('0'+v/10%10), byte('0'+v%10))
}
