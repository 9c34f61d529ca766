'use client';
import Link from 'next/link';
import { usePathname } from 'next/navigation';
import { useState, type ReactNode } from 'react';
import {
  BookOpenIcon,
  CheckCheckIcon,
  ListChecksIcon,
  LogOutIcon,
  MenuIcon,
  PlusIcon,
  ScrollTextIcon,
  ServerIcon,
  ShieldIcon,
  XIcon,
} from 'lucide-react';
import { canDo, useUser } from '../../lib/client/session';
import { cn } from '../../lib/client/utils';
import { useLiveState } from '../../lib/client/socket';
import { ThemeToggle } from '../theme-toggle';
import { Badge } from '../ui/badge';
import { Button } from '../ui/button';

interface NavItem {
  href: string;
  label: string;
  icon: typeof ServerIcon;
  show: (role: string) => boolean;
}

const NAV: NavItem[] = [
  { href: '/fleet', label: 'Fleet', icon: ServerIcon, show: () => true },
  { href: '/requests', label: 'Requests', icon: ListChecksIcon, show: () => true },
  { href: '/requests/new', label: 'New request', icon: PlusIcon, show: (r) => canDo(r, 'request:create') },
  { href: '/approvals', label: 'Approvals', icon: CheckCheckIcon, show: (r) => canDo(r, 'request:review') },
  { href: '/audit', label: 'Audit', icon: ScrollTextIcon, show: (r) => canDo(r, 'audit:read') },
  { href: '/scripts', label: 'Script library', icon: BookOpenIcon, show: () => true },
  { href: '/admin', label: 'Admin', icon: ShieldIcon, show: (r) => canDo(r, 'user:manage') },
];

function isActive(pathname: string, href: string): boolean {
  if (href === '/requests')
    return (
      pathname === '/requests' || (pathname.startsWith('/requests/') && !pathname.startsWith('/requests/new'))
    );
  return pathname === href || pathname.startsWith(`${href}/`);
}

function LiveIndicator() {
  const state = useLiveState();
  const label = state === 'live' ? 'Live' : state === 'connecting' ? 'Connecting' : 'Offline';
  return (
    <span
      className="inline-flex items-center gap-1.5 text-xs text-muted-foreground"
      role="status"
      aria-live="polite"
      title="Live updates connection"
    >
      <span
        aria-hidden="true"
        className={cn(
          'size-2 rounded-full',
          state === 'live'
            ? 'bg-success'
            : state === 'connecting'
              ? 'bg-warning animate-pulse'
              : 'bg-destructive',
        )}
      />
      {label}
    </span>
  );
}

export function AppShell({ children }: { children: ReactNode }) {
  const user = useUser();
  const pathname = usePathname();
  const [open, setOpen] = useState(false);
  const items = NAV.filter((i) => i.show(user.role));

  async function signOut() {
    await fetch('/api/auth/sign-out', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    }).catch(() => undefined);
    window.location.assign('/sign-in');
  }

  const nav = (
    <nav aria-label="Main" className="grid gap-0.5">
      {items.map((item) => {
        const active = isActive(pathname, item.href);
        const Icon = item.icon;
        return (
          <Link
            key={item.href}
            href={item.href}
            onClick={() => setOpen(false)}
            aria-current={active ? 'page' : undefined}
            className={cn(
              'flex items-center gap-2.5 rounded-md px-2.5 py-1.5 text-sm font-medium text-muted-foreground transition-colors hover:bg-accent hover:text-accent-foreground focus-visible:outline-2 focus-visible:outline-ring',
              active && 'bg-accent text-foreground',
            )}
          >
            <Icon className="size-4" aria-hidden="true" />
            {item.label}
          </Link>
        );
      })}
    </nav>
  );

  return (
    <div className="flex min-h-dvh">
      <a
        href="#main"
        className="sr-only focus:not-sr-only focus:fixed focus:top-2 focus:left-2 focus:z-50 focus:rounded-md focus:bg-background focus:px-3 focus:py-2"
      >
        Skip to content
      </a>
      <aside className="sticky top-0 hidden h-dvh w-56 shrink-0 flex-col border-r bg-card/50 p-3 md:flex">
        <Link
          href="/fleet"
          className="mb-4 flex items-center gap-2 px-2 py-1 text-base font-semibold tracking-tight"
        >
          <span
            aria-hidden="true"
            className="grid size-6 place-items-center rounded-md bg-primary text-xs font-bold text-primary-foreground"
          >
            P
          </span>
          Pyreach
        </Link>
        {nav}
        <div className="mt-auto grid gap-2 border-t pt-3">
          <div className="px-2 text-sm">
            <div className="truncate font-medium" title={user.email}>
              {user.name}
            </div>
            <div className="flex items-center gap-2">
              <Badge variant="secondary" data-testid="current-role">
                {user.role}
              </Badge>
              <LiveIndicator />
            </div>
          </div>
          <div className="flex items-center justify-between">
            <Button variant="ghost" size="sm" onClick={() => void signOut()}>
              <LogOutIcon aria-hidden="true" /> Sign out
            </Button>
            <ThemeToggle />
          </div>
        </div>
      </aside>
      <div className="flex min-w-0 flex-1 flex-col">
        <header className="sticky top-0 z-30 flex h-12 items-center gap-2 border-b bg-background/90 px-3 backdrop-blur md:hidden">
          <Button
            variant="ghost"
            size="icon"
            aria-label={open ? 'Close menu' : 'Open menu'}
            aria-expanded={open}
            aria-controls="mobile-nav"
            onClick={() => setOpen(!open)}
          >
            {open ? <XIcon aria-hidden="true" /> : <MenuIcon aria-hidden="true" />}
          </Button>
          <span className="font-semibold">Pyreach</span>
          <span className="ml-auto flex items-center gap-2">
            <LiveIndicator />
            <ThemeToggle />
          </span>
        </header>
        {open ? (
          <div id="mobile-nav" className="border-b bg-card p-3 md:hidden">
            {nav}
            <div className="mt-3 flex items-center justify-between border-t pt-3 text-sm">
              <span>
                {user.name} <Badge variant="secondary">{user.role}</Badge>
              </span>
              <Button variant="ghost" size="sm" onClick={() => void signOut()}>
                <LogOutIcon aria-hidden="true" /> Sign out
              </Button>
            </div>
          </div>
        ) : null}
        <main
          id="main"
          tabIndex={-1}
          className="mx-auto w-full max-w-7xl flex-1 px-4 py-6 focus:outline-none sm:px-6"
        >
          {children}
        </main>
      </div>
    </div>
  );
}

export function PageHeader({
  title,
  description,
  actions,
}: {
  title: string;
  description?: ReactNode;
  actions?: ReactNode;
}) {
  return (
    <div className="mb-5 flex flex-wrap items-end justify-between gap-3">
      <div className="grid gap-1">
        <h1 className="text-xl font-semibold tracking-tight">{title}</h1>
        {description ? <p className="text-sm text-muted-foreground">{description}</p> : null}
      </div>
      {actions ? <div className="flex flex-wrap items-center gap-2">{actions}</div> : null}
    </div>
  );
}
