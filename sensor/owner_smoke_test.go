package sensor

import (
	"testing"
)

func TestOwnerSmoke(t *testing.T) {
	objs, err := Load(Config{Owner: &OwnerConfig{}})
	if err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	l, err := AttachOwner(objs)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Log(l.Root)
}
