import EventIO
import NIOCore

/// A timeout that is armed far more often than it fires, like one per request on a keep-alive
/// connection. Arming records the deadline and moves the one scheduled task only when the new
/// deadline comes before it; disarming just forgets the deadline, and the task lapses when it
/// finds none. Rescheduling and cancelling timers per request would cost heap operations each
/// time. Confined to the reactor's thread.
final class DeadlineTimer {
    private let reactor: Reactor
    private let action: () -> Void
    private var deadline: NIODeadline?
    private var scheduled: (task: ReactorTimer, at: NIODeadline)?

    init(reactor: Reactor, action: @escaping () -> Void) {
        self.reactor = reactor
        self.action = action
    }

    /// Arms for `deadline`, or disarms when it is nil.
    func arm(at deadline: NIODeadline?) {
        guard let deadline else { return disarm() }
        self.deadline = deadline
        if let scheduled {
            if scheduled.at <= deadline { return }
            scheduled.task.cancel()
        }
        schedule(at: deadline)
    }

    func disarm() { deadline = nil }

    /// Disarms and cancels the scheduled task, for an owner that goes away.
    func stop() {
        deadline = nil
        scheduled?.task.cancel()
        scheduled = nil
    }

    private func schedule(at time: NIODeadline) {
        // A strong capture: a weakly referenced timer would pay for every retain and release; the
        // owner calls `stop()` when it goes away, which cancels the task.
        let task = reactor.schedule(at: time) { [self] in fire() }
        scheduled = (task, time)
    }

    private func fire() {
        scheduled = nil
        guard let deadline else { return }
        if deadline > reactor.now {
            schedule(at: deadline)
        } else {
            self.deadline = nil
            action()
        }
    }
}
