import { LabPage } from '../../../components/lab/lab-page';

export default async function Lab({ params }: { params: Promise<{ id: string }> }) {
  const { id } = await params;
  return <LabPage id={id} />;
}
