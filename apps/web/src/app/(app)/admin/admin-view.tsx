'use client';
/** Admin: users and roles, agents and join tokens, approval policies (one component per tab). */
import Link from 'next/link';
import { useRouter, useSearchParams } from 'next/navigation';
import { BookOpenIcon, BotIcon, ShieldIcon, UsersIcon, ServerIcon } from 'lucide-react';
import { PageHeader } from '../../../components/shell/app-shell';
import { Alert } from '../../../components/ui/alert';
import { Tabs, TabsContent, TabsList, TabsTrigger } from '../../../components/ui/tabs';
import { canDo, useUser } from '../../../lib/client/session';
import { AgentsTab } from './agents-tab';
import { PoliciesTab } from './policies-tab';
import { ServiceAccountsTab } from './service-accounts-tab';
import { UsersTab } from './users-tab';

export function AdminView() {
  const user = useUser();
  const sp = useSearchParams();
  const router = useRouter();
  const tab = sp.get('tab') ?? 'users';
  if (!canDo(user.role, 'user:manage')) {
    return (
      <>
        <PageHeader title="Admin" />
        <Alert variant="warning" title="Admins only">
          Your role is {user.role}.
        </Alert>
      </>
    );
  }
  return (
    <>
      <PageHeader
        title="Admin"
        description="Users and roles, agents and join tokens, approval policies, service accounts and API tokens, the script library."
      />
      <Tabs value={tab} onValueChange={(t) => router.replace(`/admin?tab=${t}`)}>
        <TabsList aria-label="Admin sections">
          <TabsTrigger value="users">
            <UsersIcon aria-hidden="true" /> Users
          </TabsTrigger>
          <TabsTrigger value="agents">
            <ServerIcon aria-hidden="true" /> Agents
          </TabsTrigger>
          <TabsTrigger value="policies">
            <ShieldIcon aria-hidden="true" /> Policies
          </TabsTrigger>
          <TabsTrigger value="service-accounts">
            <BotIcon aria-hidden="true" /> Service accounts
          </TabsTrigger>
        </TabsList>
        <TabsContent value="users">
          <UsersTab />
        </TabsContent>
        <TabsContent value="agents">
          <AgentsTab />
        </TabsContent>
        <TabsContent value="policies">
          <PoliciesTab />
        </TabsContent>
        <TabsContent value="service-accounts">
          <ServiceAccountsTab />
        </TabsContent>
      </Tabs>
      <p className="mt-6 text-sm text-muted-foreground">
        <BookOpenIcon aria-hidden="true" className="mr-1 inline size-4" />
        The built-in scripts are listed in the{' '}
        <Link className="underline" href="/scripts">
          script library
        </Link>
        .
      </p>
    </>
  );
}
