package perfevents

import (
	"os"
	"path/filepath"
	"strings"
)

// Lockdown is the kernel lockdown mode ("none", "integrity" or
// "confidentiality"), "" where securityfs does not say. Confidentiality
// refuses kprobes (LOCKDOWN_KPROBES) and tracefs (LOCKDOWN_TRACEFS) even to
// root; integrity refuses neither.
func Lockdown() string {
	b, err := os.ReadFile(filepath.Join(SysfsRoot, "sys/kernel/security/lockdown"))
	if err != nil {
		return ""
	}
	return parseLockdown(string(b))
}

// parseLockdown reads the selected mode, the one in brackets:
// "none integrity [confidentiality]".
func parseLockdown(s string) string {
	for _, f := range strings.Fields(s) {
		if strings.HasPrefix(f, "[") && strings.HasSuffix(f, "]") {
			return strings.Trim(f, "[]")
		}
	}
	return ""
}
