import CSystemd

/// Tells systemd (Type=notify units) when the daemon is ready and when it is stopping.
/// Does nothing when not run by systemd (no NOTIFY_SOCKET).
public enum SystemdNotifier {
    public static func ready(status: String) { notify("READY=1\nSTATUS=\(status)") }
    public static func stopping() { notify("STOPPING=1") }

    private static func notify(_ state: String) {
        _ = sd_notify(0, state)
    }
}
