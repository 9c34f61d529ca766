/**
 * The Python harness the target runs. It is static code: the only thing substituted is the staging
 * directory, hex-encoded by the engine (a path the engine chose, never user input). The user's code,
 * params and settings are staged as separate data files and read by the harness.
 *
 * The staging directory is root-owned and not writable by the target (see staging.ts): the harness cannot
 * create, rename or remove anything there. It reads
 *   run.py       this harness (the path written into the target's thread state)
 *   code.py      the user's code (compiled as bytes: UTF-8 unless it declares a coding)
 *   params.json  the params object
 *   job.json     { runId, inline, budgetSec, capBytes }
 *   ctl          the engine writes "cancel" into it to ask the run to stop early
 * and writes, each into a file the engine created for it and owns a descriptor on:
 *   claim.txt    the native id of each thread that picked the request up, appended; the first line wins
 *   picked.json  { pickedUpAt, tid, name, runner: { tid, name } }   once, at pickup
 *   out.txt      captured output, appended as it is produced (bytes; lone surrogates as surrogatepass)
 *   result.json  the final report, once
 * A JSON record is one write of ASCII JSON (ensure_ascii: lone surrogates become \\ud800 escapes, so the
 * write cannot fail on encoding) followed by a newline; the engine reads it only once the newline is there.
 */
export const HARNESS_TEMPLATE = String.raw`
def _pyreach_main(_dir_hex):
    import builtins, datetime, json, os, sys, threading, traceback
    _dir = bytes.fromhex(_dir_hex).decode('utf-8', 'surrogateescape')
    _join = os.path.join

    def _now():
        return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')

    def _write_json(name, obj):
        data = (json.dumps(obj, ensure_ascii=True) + '\n').encode('ascii')
        fd = os.open(_join(_dir, name), os.O_WRONLY | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_CLOEXEC', 0))
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)

    # The engine may arm several threads (thread "auto"): the first to get here claims the run, the others
    # return at once. The claim is an O_APPEND write of our native id into claim.txt (appends are atomic on
    # one file); whoever's line comes first won. No state is left in the target's memory.
    _mine = b'%d\n' % threading.get_native_id()
    try:
        _cfd = os.open(_join(_dir, 'claim.txt'), os.O_RDWR | os.O_APPEND | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_CLOEXEC', 0))
    except OSError:
        return  # the run is over (withdrawn, its staging removed)
    try:
        os.write(_cfd, _mine)
        _first = os.pread(_cfd, 32, 0)
    finally:
        os.close(_cfd)
    if _first[:len(_mine)] != _mine:
        return

    picked_at = _now()
    me = threading.current_thread()
    picker = {'pickedUpAt': picked_at, 'tid': threading.get_native_id(), 'name': me.name}
    try:
        with open(_join(_dir, 'job.json'), encoding='utf-8') as f:
            job = json.load(f)
        with open(_join(_dir, 'params.json'), encoding='utf-8') as f:
            params = json.load(f)
        with open(_join(_dir, 'code.py'), 'rb') as f:
            source = f.read()
    except BaseException as e:
        try:
            _write_json('picked.json', dict(picker, runner=None))
            _write_json('result.json', {'status': 'harness_error', 'error': {'type': type(e).__name__, 'message': str(e)[:65536], 'traceback': traceback.format_exc()[:262144]}, 'finishedAt': _now()})
        except BaseException:
            pass
        return

    cap = int(job.get('capBytes') or 1048576)
    budget = float(job.get('budgetSec') or 30)
    filename = '<pyreach:%s>' % job.get('runId', 'run')
    out_lock = threading.Lock()
    # dropped: bytes printed after the cap cut (reported, so the page can say how much is missing)
    state = {'bytes': 0, 'truncated': False, 'dropped': 0}
    out_f = open(_join(_dir, 'out.txt'), 'ab', buffering=0)

    def emit(text):
        data = str(text).encode('utf-8', 'surrogatepass')
        with out_lock:
            if state['truncated']:
                state['dropped'] += len(data)
                return
            room = cap - state['bytes']
            if len(data) > room:
                cut = data[:max(room, 0)]
                # never cut a UTF-8 sequence in half
                while cut and (cut[-1] & 0xC0) == 0x80:
                    cut = cut[:-1]
                if cut and cut[-1] >= 0xC0:
                    cut = cut[:-1]
                state['dropped'] += len(data) - len(cut)
                data = cut + ('\n[pyreach: output truncated at %d bytes]\n' % cap).encode()
                state['truncated'] = True
            state['bytes'] += len(data)
            try:
                out_f.write(data)
            except OSError:
                pass

    def captured_print(*args, sep=' ', end='\n', file=None, flush=False):
        if file is not None and file is not sys.stdout and file is not sys.stderr:
            return builtins.print(*args, sep=sep, end=end, file=file, flush=flush)
        emit((' ' if sep is None else sep).join(str(a) for a in args) + ('\n' if end is None else end))

    class PyreachTimeBudgetExceeded(BaseException):
        pass

    ctl = {'done': False, 'ident': None, 'budget_hit': False, 'cancelled': False}
    ctl_lock = threading.Lock()
    try:
        import ctypes
        set_async = ctypes.pythonapi.PyThreadState_SetAsyncExc
        set_async.argtypes = [ctypes.c_ulong, ctypes.py_object]
        set_async.restype = ctypes.c_int
        # Same C function with a NULL exception: clears a pending asynchronous exception.
        clear_async = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)(('PyThreadState_SetAsyncExc', ctypes.pythonapi))
    except BaseException:
        set_async = None
        clear_async = None

    def interrupt(reason):
        with ctl_lock:
            if ctl['done'] or ctl['ident'] is None or set_async is None:
                return False
            ctl[reason] = True
            set_async(ctl['ident'], PyreachTimeBudgetExceeded)
            return True

    def cancel_requested():
        try:
            return os.stat(_join(_dir, 'ctl')).st_size > 0
        except OSError:
            return False

    def watchdog(deadline):
        import time
        while True:
            with ctl_lock:
                if ctl['done']:
                    return
            now = time.monotonic()
            if now >= deadline:
                interrupt('budget_hit')
                return
            if cancel_requested():
                interrupt('cancelled')
                return
            time.sleep(min(0.05, deadline - now))

    def finish_guard():
        # Mark done and drop an asynchronous exception that may still be pending for this thread, so it
        # can never surface in the target's own code after we return.
        while True:
            try:
                with ctl_lock:
                    ctl['done'] = True
                    if clear_async is not None and ctl['ident'] is not None:
                        clear_async(ctl['ident'], None)
                return
            except PyreachTimeBudgetExceeded:
                continue

    def run_user_code():
        import time
        runner = threading.current_thread()
        report = {'status': 'succeeded', 'pickedUpAt': picked_at,
                  'thread': {'tid': threading.get_native_id(), 'name': runner.name}}
        try:
            try:
                with ctl_lock:
                    ctl['ident'] = threading.get_ident()
                threading.Thread(target=watchdog, args=(time.monotonic() + budget,), name='pyreach-watchdog', daemon=True).start()
                code = compile(source, filename, 'exec', dont_inherit=True)
                import linecache
                try:
                    text = source.decode('utf-8')
                    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
                except UnicodeDecodeError:
                    pass
                ns = {'__name__': '__pyreach__', '__builtins__': builtins, 'params': params, 'print': captured_print}
                exec(code, ns)
                if 'result' in ns:
                    value = ns['result']
                    try:
                        report['result'] = json.loads(json.dumps(value, allow_nan=False))
                    except BaseException:
                        try:
                            report['result'] = repr(value)
                        except BaseException as e:
                            report['result'] = '<unrepresentable %s: %s>' % (type(value).__name__, e)
            except BaseException as e:
                tb = e.__traceback__
                # drop the harness's own frames from the top of the traceback
                while tb is not None and tb.tb_frame.f_code.co_filename != filename:
                    tb = tb.tb_next
                report['status'] = 'failed'
                if isinstance(e, PyreachTimeBudgetExceeded):
                    report['budgetExceeded'] = not ctl['cancelled']
                    report['cancelled'] = ctl['cancelled']
                    what = 'cancelled by the engine' if ctl['cancelled'] else 'time budget of %gs exceeded' % budget
                    report['error'] = {'type': 'TimeBudgetExceeded', 'message': what,
                                       'traceback': ''.join(traceback.format_exception(type(e), e, tb))}
                else:
                    report['error'] = {'type': type(e).__qualname__, 'message': str(e)[:65536],
                                       'traceback': ''.join(traceback.format_exception(type(e), e, tb))[:262144]}
            finally:
                finish_guard()
        except PyreachTimeBudgetExceeded:
            finish_guard()
            report['status'] = 'failed'
            report['budgetExceeded'] = True
            report['error'] = {'type': 'TimeBudgetExceeded', 'message': 'time budget of %gs exceeded' % budget}
        try:
            import linecache
            linecache.cache.pop(filename, None)
            report['outputTruncated'] = state['truncated']
            if state['truncated']:
                report['outputDroppedBytes'] = state['dropped']
            report['finishedAt'] = _now()
            try:
                out_f.close()
            except OSError:
                pass
            if 'result' in report:
                size = len(json.dumps(report['result'], ensure_ascii=True))
                if size > 8 * 1024 * 1024:
                    report['result'] = '<result of %d bytes as JSON exceeds the 8 MiB limit>' % size
            _write_json('result.json', report)
        except BaseException as e:
            # Never fail silently: the engine would otherwise wait for a report that cannot come.
            try:
                _write_json('result.json', {'status': 'harness_error', 'finishedAt': _now(),
                                            'error': {'type': type(e).__name__, 'message': 'could not write the report: %s' % (str(e)[:4096],)}})
            except BaseException:
                pass

    if job.get('inline'):
        _write_json('picked.json', dict(picker, runner={'tid': picker['tid'], 'name': picker['name']}))
        run_user_code()
    else:
        def runner_main():
            # The runner announces the pickup itself, so the engine learns which thread runs the code.
            _write_json('picked.json', dict(picker, runner={'tid': threading.get_native_id(), 'name': threading.current_thread().name}))
            run_user_code()

        try:
            threading.Thread(target=runner_main, name='pyreach-run-%s' % job.get('runId', ''), daemon=True).start()
        except BaseException as e:
            _write_json('picked.json', dict(picker, runner=None))
            _write_json('result.json', {'status': 'harness_error', 'finishedAt': _now(),
                                        'error': {'type': type(e).__name__, 'message': 'could not start the run thread: %s' % (str(e)[:4096],)}})

try:
    _pyreach_main('@@DIR_HEX@@')
except BaseException:
    pass
del _pyreach_main
`;

export function renderHarness(stagingDirInTarget: string): string {
  return HARNESS_TEMPLATE.replace('@@DIR_HEX@@', Buffer.from(stagingDirInTarget, 'utf8').toString('hex'));
}
