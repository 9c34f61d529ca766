'use client';
import { Controller, useWatch, type Control } from 'react-hook-form';
import { BookOpenIcon, CodeIcon } from 'lucide-react';
import type { PolicyPreview, ScriptSummary } from '@pyreach/protocol/api';
import { CodeEditor } from '../../../../components/code-editor';
import { SchemaForm } from '../../../../components/schema-form';
import { RiskBadge } from '../../../../components/status';
import { Alert } from '../../../../components/ui/alert';
import { Badge } from '../../../../components/ui/badge';
import { Card, CardContent, CardDescription, CardHeader, CardTitle } from '../../../../components/ui/card';
import { NativeSelect } from '../../../../components/ui/input';
import { Field, Label } from '../../../../components/ui/label';
import { ErrorState, LoadingRows } from '../../../../components/ui/states';
import { Tabs, TabsContent, TabsList, TabsTrigger } from '../../../../components/ui/tabs';
import type { Resource } from '../../../../lib/client/api';
import type { CodeMode, DraftErrors, RequestDraft } from './request-draft';

interface Props {
  control: Control<RequestDraft>;
  scripts: Resource<{ scripts: ScriptSummary[] }>;
  policy: PolicyPreview | null;
  /** Shown once the person tried to file. */
  errors: Pick<DraftErrors, 'code' | 'params'> | null;
}

/** 2. What to run: a reviewed library script with typed parameters, or custom code where the policy allows it. */
export function CodePicker({ control, scripts, policy, errors }: Props) {
  const scriptId = useWatch({ control, name: 'scriptId' });
  const list = scripts.data?.scripts ?? [];
  const script = list.find((s) => s.id === scriptId);
  return (
    <Card>
      <CardHeader>
        <CardTitle>2. What to run</CardTitle>
        <CardDescription>
          A reviewed library script with typed parameters, or custom code where the policy allows it.
        </CardDescription>
      </CardHeader>
      <CardContent>
        <Controller
          control={control}
          name="codeMode"
          render={({ field }) => (
            <Tabs value={field.value} onValueChange={(v) => field.onChange(v as CodeMode)}>
              <TabsList aria-label="Kind of code">
                <TabsTrigger value="library">
                  <BookOpenIcon aria-hidden="true" /> Library script
                </TabsTrigger>
                <TabsTrigger value="custom">
                  <CodeIcon aria-hidden="true" /> Custom code
                </TabsTrigger>
              </TabsList>
              <TabsContent value="library" className="grid gap-4">
                {scripts.error ? (
                  <ErrorState error={scripts.error} onRetry={scripts.reload} />
                ) : !scripts.data ? (
                  <LoadingRows rows={2} />
                ) : (
                  <>
                    <Controller
                      control={control}
                      name="scriptId"
                      render={({ field: f }) => (
                        <Field id="script" label="Script">
                          <NativeSelect
                            id="script"
                            value={f.value}
                            onChange={(e) => f.onChange(e.target.value)}
                          >
                            {list.map((s) => (
                              <option key={s.id} value={s.id}>
                                {s.title} ({s.id})
                              </option>
                            ))}
                          </NativeSelect>
                        </Field>
                      )}
                    />
                    {script ? (
                      <ScriptParams control={control} script={script} errors={errors?.params ?? {}} />
                    ) : null}
                  </>
                )}
              </TabsContent>
              <TabsContent value="custom" className="grid gap-2">
                {policy && !policy.allowCustomCode ? (
                  <Alert variant="warning" title="The policy for these targets allows library scripts only">
                    Filing custom code will be refused. Pick a library script, or narrow the targets.
                  </Alert>
                ) : null}
                <Label id="custom-code-label">Python code</Label>
                <Controller
                  control={control}
                  name="custom"
                  render={({ field: f }) => (
                    <CodeEditor
                      value={f.value}
                      onChange={f.onChange}
                      label="Custom Python code"
                      testId="custom-code"
                    />
                  )}
                />
              </TabsContent>
            </Tabs>
          )}
        />
        {errors?.code ? (
          <p role="alert" className="mt-2 text-sm text-destructive">
            {errors.code}
          </p>
        ) : null}
      </CardContent>
    </Card>
  );
}

function ScriptParams({
  control,
  script,
  errors,
}: {
  control: Control<RequestDraft>;
  script: ScriptSummary;
  errors: Record<string, string>;
}) {
  return (
    <>
      <div className="flex flex-wrap items-center gap-2 text-sm">
        <RiskBadge risk={script.risk} />
        {script.readOnly ? (
          <Badge variant="secondary">read-only</Badge>
        ) : (
          <Badge variant="warning">changes state</Badge>
        )}
        <span className="text-muted-foreground">{script.description}</span>
      </div>
      <fieldset className="grid gap-2 rounded-md border p-3">
        <legend className="px-1 text-sm font-medium">
          Parameters (sent as data, never pasted into the code)
        </legend>
        <Controller
          control={control}
          name="params"
          render={({ field }) => (
            <SchemaForm
              schema={script.paramsSchema}
              values={field.value}
              onChange={field.onChange}
              errors={errors}
              idPrefix="param"
            />
          )}
        />
      </fieldset>
      <details className="rounded-md border">
        <summary className="cursor-pointer px-3 py-2 text-sm font-medium">
          Show the script&apos;s source
        </summary>
        <div className="p-2">
          <CodeEditor key={script.id} value={script.source} readOnly label={`Source of ${script.id}`} />
        </div>
      </details>
    </>
  );
}
