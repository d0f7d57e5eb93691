// EventIO: the data plane's single-threaded epoll event loop: reactor, timers, TCP listener,
// connector, and stream sockets over their transport.

import CEventIO
import Foundation
import NIOCore
import Synchronization

/// Something registered with a reactor that is told when its file descriptor is ready.
protocol ReadinessHandler: AnyObject {
    func ready(_ events: UInt32)
}

/// A single-threaded epoll loop for the sidecar's data path: sockets, timers, tasks handed over
/// from other threads, and work deferred to the end of the current turn. Everything registered
/// with it is confined to its thread; only `execute` and `submit` may be called from elsewhere.
///
/// It does what a general-purpose event loop does for a proxy with far less work per event: no
/// channel pipeline, no futures or promises per write, one array lookup per ready descriptor.
public final class Reactor: @unchecked Sendable {
    public let allocator = ByteBufferAllocator()
    private let epoll: Int32
    private let wakeFD: Int32
    /// What is registered, by file descriptor (descriptors are small integers).
    private var registrations: [Registration] = []
    private var timers = TimerHeap()
    /// Work for the end of the current turn, after all ready descriptors were handled.
    private var endOfTurn: [() -> Void] = []
    /// Handlers to be told they are readable again, once per turn after the ready ones: they stopped
    /// reading before the kernel was empty (edge-triggered, no new event would come for those bytes).
    private var readableAgain: [ReadinessHandler] = []
    /// Work handed over by other threads.
    private let inbox = Mutex<[@Sendable () -> Void]>([])
    private let stopping = Atomic<Bool>(false)
    /// Scratch space for `writev`, reused by every socket of this reactor.
    let iovecs = UnsafeMutablePointer<iovec>.allocate(capacity: StreamSocket.maxIovecs)
    /// Scratch space where TLS gathers buffers into one record, reused likewise.
    let recordScratch = UnsafeMutableRawBufferPointer.allocate(byteCount: TLSTransport.recordSize, alignment: 16)
    /// The loop's thread once it runs.
    private var loopThread: pthread_t?

    /// A reactor that is never started and whose clock only moves with `advanceTime`: for testing
    /// timers deterministically.
    public static func manuallyClocked() throws -> Reactor {
        let reactor = try Reactor()
        reactor.manualNow = .uptimeNanoseconds(1_000_000_000)
        return reactor
    }

    public init() throws {
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epoll >= 0 else { throw SocketError.system("epoll_create1", errno) }
        wakeFD = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard wakeFD >= 0 else { throw SocketError.system("eventfd", errno) }
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.u64 = UInt64(wakeFD)
        epoll_ctl(epoll, EPOLL_CTL_ADD, wakeFD, &event)
    }

    deinit {
        for fd in registrations.indices where registrations[fd].handler != nil { Glibc.close(Int32(fd)) }
        Glibc.close(epoll)
        Glibc.close(wakeFD)
        iovecs.deallocate()
        recordScratch.deallocate()
    }

    /// Starts the loop on a thread of its own.
    public func start(name: String) {
        let thread = Thread { [self] in run() }
        thread.name = name
        thread.start()
    }

    /// Ends the loop after its current turn; tasks handed over before still run.
    public func stop() {
        stopping.store(true, ordering: .releasing)
        wake()
    }

    /// On the loop's thread, the time at the start of the current turn (read again before timers
    /// fire): timeouts and ages need no more precision than that, and reading the clock costs a
    /// little every time. Before the loop runs, the current time.
    public var now: NIODeadline {
        if let manualNow { return manualNow }
        return loopThread == nil ? .now() : turnStart
    }
    private var turnStart = NIODeadline.now()
    /// Set for a reactor whose time is moved by hand (`advanceTime`), in tests.
    private var manualNow: NIODeadline?

    /// Whether the caller runs on the loop's thread (or the loop has not started yet, when the one
    /// thread setting it up owns everything).
    public var isCurrent: Bool {
        guard let loopThread else { return true }
        return pthread_equal(loopThread, pthread_self()) != 0
    }

    // MARK: Work from other threads

    /// Runs `task` on the loop's thread. Callable from any thread.
    public func execute(_ task: @escaping @Sendable () -> Void) {
        let wasEmpty = inbox.withLock { tasks in
            tasks.append(task)
            return tasks.count == 1
        }
        if wasEmpty { wake() }
    }

    /// Runs `body` on the loop's thread and returns its result.
    public func submit<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            execute { continuation.resume(returning: body()) }
        }
    }

    private func wake() {
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)
    }

    // MARK: Work on the loop's thread

    /// Runs `task` once everything ready in this turn was handled.
    public func atEndOfTurn(_ task: @escaping () -> Void) {
        endOfTurn.append(task)
    }

    /// Tells `handler` it is readable in this turn, after the others ready now (in the next turn
    /// when this one is past that point).
    func readAgain(_ handler: ReadinessHandler) {
        readableAgain.append(handler)
    }

    /// Runs `action` at `deadline` unless the returned timer is cancelled first.
    @discardableResult
    public func schedule(at deadline: NIODeadline, _ action: @escaping () -> Void) -> ReactorTimer {
        let timer = ReactorTimer(deadline: deadline, action: action)
        timers.push(timer)
        return timer
    }

    @discardableResult
    public func schedule(in delay: TimeAmount, _ action: @escaping () -> Void) -> ReactorTimer {
        schedule(at: now + delay, action)
    }

    /// Runs `action` every `interval` until the returned timer is cancelled.
    public func scheduleRepeating(every interval: TimeAmount, _ action: @escaping () -> Void) -> RepeatingTimer {
        let repeating = RepeatingTimer()
        func next() {
            repeating.current = schedule(in: interval) {
                guard !repeating.cancelled else { return }
                action()
                next()
            }
        }
        next()
        return repeating
    }

    // MARK: Read buffers

    /// A read buffer that its last reader did not keep, for the next read of about its size.
    private var spareReadBuffer: ByteBuffer?

    /// An empty buffer of at least `capacity` bytes (at most twice that when one is reused).
    func readBuffer(capacity: Int) -> ByteBuffer {
        if let spare = spareReadBuffer, spare.capacity >= capacity, spare.capacity <= 2 * capacity {
            spareReadBuffer = nil
            return spare
        }
        return allocator.buffer(capacity: capacity)
    }

    /// Keeps `buffer` for the next read unless someone else still holds it.
    func recycle(_ buffer: inout ByteBuffer) {
        if buffer.modifyIfUniquelyOwned({ $0.clear() }) != nil {
            spareReadBuffer = buffer
        }
    }

    // MARK: Registration

    /// A descriptor's handler, and how many times the descriptor was registered: an event read
    /// before its descriptor was closed and reused in the same turn is not handed to the new owner.
    private struct Registration {
        var handler: ReadinessHandler?
        var generation: UInt32 = 0
    }

    func register(_ fd: Int32, events: UInt32, handler: ReadinessHandler) throws {
        let index = Int(fd)
        if registrations.count <= index {
            registrations.append(contentsOf: repeatElement(Registration(), count: index + 1 - registrations.count))
        }
        registrations[index].handler = handler
        registrations[index].generation &+= 1
        guard control(EPOLL_CTL_ADD, fd, events: events) == 0 else {
            registrations[index].handler = nil
            throw SocketError.system("epoll_ctl", errno)
        }
    }

    /// Hands a registered descriptor to another handler (a connected socket taking over from its connect).
    func reassign(_ fd: Int32, to handler: ReadinessHandler) {
        registrations[Int(fd)].handler = handler
    }

    func modify(_ fd: Int32, events: UInt32) {
        control(EPOLL_CTL_MOD, fd, events: events)
    }

    @discardableResult
    private func control(_ operation: Int32, _ fd: Int32, events: UInt32) -> Int32 {
        var event = epoll_event()
        event.events = events
        event.data.u64 = UInt64(UInt32(fd)) | UInt64(registrations[Int(fd)].generation) << 32
        return epoll_ctl(epoll, operation, fd, &event)
    }

    /// Forgets `fd` and closes it.
    func close(_ fd: Int32) {
        epoll_ctl(epoll, EPOLL_CTL_DEL, fd, nil)
        registrations[Int(fd)].handler = nil
        Glibc.close(fd)
    }

    /// Moves a manually clocked reactor's time forward and runs the timers due by then.
    public func advanceTime(by amount: TimeAmount) {
        precondition(manualNow != nil, "advanceTime needs a manually clocked reactor")
        manualNow = manualNow! + amount
        fireDueTimers()
        runEndOfTurn()
    }

    // MARK: The loop

    private func run() {
        loopThread = pthread_self()
        let capacity = 512
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: capacity)
        defer { events.deallocate() }
        while !stopping.load(ordering: .acquiring) {
            let timeout = readableAgain.isEmpty ? timers.millisecondsUntilNext(now: .now()) : 0
            let count = epoll_wait(epoll, events, Int32(capacity), timeout)
            turnStart = .now()
            for index in 0..<Int(max(count, 0)) {
                let event = events[index]
                let fd = Int32(truncatingIfNeeded: event.data.u64)
                if fd == wakeFD {
                    var value: UInt64 = 0
                    _ = Glibc.read(wakeFD, &value, 8)
                } else if registrations[Int(fd)].generation == UInt32(truncatingIfNeeded: event.data.u64 >> 32),
                          let handler = registrations[Int(fd)].handler {
                    handler.ready(event.events)
                }
            }
            runReadableAgain()
            runEndOfTurn()
            runHandedOver()
            turnStart = .now()
            fireDueTimers()
            runEndOfTurn()
        }
        runHandedOver()
    }

    private func runEndOfTurn() {
        while !endOfTurn.isEmpty {
            let tasks = endOfTurn
            endOfTurn.removeAll(keepingCapacity: true)
            for task in tasks { task() }
        }
    }

    private func runReadableAgain() {
        guard !readableAgain.isEmpty else { return }
        let again = readableAgain
        readableAgain.removeAll(keepingCapacity: true)
        for handler in again { handler.ready(EPOLLIN.rawValue) }
    }

    /// Runs the actions of all timers due now, including those scheduled by them for now.
    private func fireDueTimers() {
        let now = now
        while let timer = timers.popDue(now: now) {
            if let action = timer.action {
                timer.action = nil
                action()
            }
        }
    }

    private func runHandedOver() {
        let tasks = inbox.withLock { tasks in
            defer { tasks.removeAll() }
            return tasks
        }
        for task in tasks { task() }
    }
}

/// A timer scheduled on a reactor; cancelling it before it fires drops its action.
public final class ReactorTimer {
    let deadline: NIODeadline
    var action: (() -> Void)?

    init(deadline: NIODeadline, action: @escaping () -> Void) {
        self.deadline = deadline
        self.action = action
    }

    public func cancel() { action = nil }
}

/// A timer that fires every interval until cancelled.
public final class RepeatingTimer {
    fileprivate var current: ReactorTimer?
    fileprivate var cancelled = false

    public func cancel() {
        cancelled = true
        current?.cancel()
    }
}

/// Timers ordered by deadline (a binary min-heap).
struct TimerHeap {
    private var heap: [ReactorTimer] = []

    mutating func push(_ timer: ReactorTimer) {
        heap.append(timer)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].deadline < heap[parent].deadline else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    /// How long epoll may wait: until the earliest deadline (rounded up), or forever.
    func millisecondsUntilNext(now: NIODeadline) -> Int32 {
        guard let first = heap.first else { return -1 }
        let nanoseconds = (first.deadline - now).nanoseconds
        if nanoseconds <= 0 { return 0 }
        return Int32(clamping: (nanoseconds + 999_999) / 1_000_000)
    }

    /// Removes and returns the earliest timer if it is due at `now`.
    mutating func popDue(now: NIODeadline) -> ReactorTimer? {
        guard let first = heap.first, first.deadline <= now else { return nil }
        let last = heap.removeLast()
        guard !heap.isEmpty else { return first }
        heap[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < heap.count && heap[left].deadline < heap[smallest].deadline { smallest = left }
            if right < heap.count && heap[right].deadline < heap[smallest].deadline { smallest = right }
            if smallest == parent { return first }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
    }
}

/// A failed socket operation.
public enum SocketError: Error, CustomStringConvertible {
    case system(String, Int32)
    case timedOut(TimeAmount)
    case unresolved(String)

    public var description: String {
        switch self {
        case .system(_, let code): String(cString: strerror(code)).lowercased()
        case .timedOut(let timeout): "timed out after \(timeout)"
        case .unresolved(let host): "cannot resolve \(host)"
        }
    }
}

/// A value confined to a reactor's thread, carried across threads so that work handed to the
/// reactor (`execute`, `submit`) can use it there. Use `value` only on the reactor's thread.
public struct ReactorBound<Value>: @unchecked Sendable {
    private let wrapped: Value
    public let reactor: Reactor

    public init(_ value: Value, on reactor: Reactor) {
        self.wrapped = value
        self.reactor = reactor
    }

    public var value: Value {
        assert(reactor.isCurrent, "a reactor-bound value used off its reactor's thread")
        return wrapped
    }
}
