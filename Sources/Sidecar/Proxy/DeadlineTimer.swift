import NIOCore

/// A timeout that is armed far more often than it fires, like one per request on a keep-alive
/// connection. Arming records the deadline and moves the one scheduled task only when the new
/// deadline comes before it; disarming just forgets the deadline, and the task lapses when it
/// finds none. Rescheduling and cancelling event-loop tasks per request would cost a heap
/// operation and a linear search among all timers each time. Confined to one event loop.
final class DeadlineTimer {
    private let loop: any EventLoop
    private let action: () -> Void
    private var deadline: NIODeadline?
    private var scheduled: (task: Scheduled<Void>, at: NIODeadline)?

    init(loop: any EventLoop, action: @escaping () -> Void) {
        self.loop = loop
        self.action = action
    }

    func arm(in timeout: TimeAmount) {
        let deadline = loop.now + timeout
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
        let task = loop.assumeIsolated().scheduleTask(deadline: time) { [self] in fire() }
        scheduled = (task, time)
    }

    private func fire() {
        scheduled = nil
        guard let deadline else { return }
        if deadline > loop.now {
            schedule(at: deadline)
        } else {
            self.deadline = nil
            action()
        }
    }
}
